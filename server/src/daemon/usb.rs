//! USB forwarding, the daemon's part: what each appliance may forward (the grant, following
//! the session it shows and the `[usb]` policy), telling its connection when that changes, and
//! the audit log of attaches, refusals and detaches.

use std::{net::SocketAddr, sync::Arc};

use wayray_protocol::sessions::{session_id_string, ApplianceId, SessionKind};

use super::{ConnEvent, Daemon};
use crate::store::{AuditEvent, AuditKind};
use crate::usb::{self, nodes::NodeOwner, Forwarding, Grant, UsbConfig};

/// The daemon's USB forwarding state.
pub struct UsbState {
    pub forwarding: Arc<Forwarding>,
    pub policy: UsbConfig,
    /// The account the shared session runs as (the one wrsrvd was started as), in shared mode.
    pub shared_user: Option<Account>,
}

impl Default for UsbState {
    fn default() -> Self {
        Self {
            forwarding: Arc::new(Forwarding::off("not started")),
            policy: UsbConfig::default(),
            shared_user: None,
        }
    }
}

/// A user's name and ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    /// Looks a user up by name.
    pub fn by_name(name: &str) -> Option<Account> {
        let user = nix::unistd::User::from_name(name).ok()??;
        Some(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// The account this process runs as.
    pub fn current() -> Option<Account> {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
        Some(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

/// `[usb] shared_user` must name an account here: it owns the shared session's devices, and an
/// unknown one would leave every appliance keeping its devices without a word.
pub fn check_shared_user(policy: &UsbConfig) -> Result<(), String> {
    match &policy.shared_user {
        Some(name) if policy.enabled && Account::by_name(name).is_none() => Err(format!(
            "[usb] shared_user = {name:?} is not an account on this server"
        )),
        _ => Ok(()),
    }
}

impl Daemon {
    /// What `appliance` may forward now: nothing unless forwarding works, the appliance shows
    /// a user's session (or the shared one), and the policy for that user and the appliance's
    /// network names a filter.
    pub fn usb_grant(&self, appliance: ApplianceId) -> Option<Grant> {
        if !self.usb.forwarding.available() {
            return None;
        }
        let a = self.appliances.get(&appliance)?;
        let session = a.session?;
        let s = self.sessions.get(&session)?;
        let account = match s.kind {
            SessionKind::Greeter => return None,
            SessionKind::User => Account::by_name(s.user.as_deref()?)?,
            SessionKind::Shared => match &self.usb.policy.shared_user {
                Some(name) => Account::by_name(name)?,
                None => self.usb.shared_user.clone()?,
            },
        };
        let addr = a.remote.parse::<SocketAddr>().ok().map(|s| s.ip());
        let filter = self.usb.policy.resolve(&account.name, addr)?;
        Some(Grant {
            filter,
            user: account.name,
            owner: NodeOwner {
                uid: account.uid,
                gid: account.gid,
            },
            session,
        })
    }

    /// Tells `appliance`'s connection its grant (it sends the appliance the new policy and
    /// detaches what the grant no longer covers).
    pub(super) fn usb_changed(&self, appliance: ApplianceId) {
        if let Some(a) = self.appliances.get(&appliance) {
            let _ = a.tx.send(ConnEvent::UsbPolicy(self.usb_grant(appliance)));
        }
    }

    /// A new `[usb]` policy (config reload): every appliance hears its grant again.
    pub fn usb_policy_changed(&mut self, policy: UsbConfig) {
        self.usb.policy = policy;
        let ids: Vec<ApplianceId> = self.appliances.keys().copied().collect();
        for id in ids {
            self.usb_changed(id);
        }
    }

    /// An attach, refusal or detach on `appliance`, for the audit log.
    pub fn usb_audit(
        &mut self,
        appliance: ApplianceId,
        kind: usb::AuditKind,
        grant: Option<&Grant>,
        detail: String,
    ) {
        let kind = match kind {
            usb::AuditKind::Attached => AuditKind::UsbAttached,
            usb::AuditKind::Refused => AuditKind::UsbRefused,
            usb::AuditKind::Detached => AuditKind::UsbDetached,
        };
        let mut event = AuditEvent::new(kind).detail(detail);
        if let Some(a) = self.appliances.get(&appliance) {
            event.appliance = Some(a.identity(appliance));
            event.token = a.token.clone();
        }
        if let Some(g) = grant {
            event = event.session(g.session).user(g.user.clone());
            tracing::debug!(session = %session_id_string(g.session), "usb audit");
        }
        self.audit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_shared_user_is_refused_while_forwarding_is_on() {
        let mut policy = UsbConfig {
            shared_user: Some("no-such-user-wayray-test".into()),
            ..UsbConfig::default()
        };
        let err = check_shared_user(&policy).unwrap_err();
        assert!(err.contains("no-such-user-wayray-test"), "{err}");
        policy.shared_user = Some("root".into());
        assert_eq!(check_shared_user(&policy), Ok(()));
        policy.shared_user = None;
        assert_eq!(check_shared_user(&policy), Ok(()));
        policy.shared_user = Some("no-such-user-wayray-test".into());
        policy.enabled = false;
        assert_eq!(check_shared_user(&policy), Ok(()));
    }
}
