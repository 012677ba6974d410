//! Appliances known by their certificate (`appliance_auth`): who may have sessions, who waits
//! for an administrator, and who was revoked. The store's `appliances` table is the truth; the
//! daemon marks each live connection admitted or not, and only admitted ones are ever routed to
//! a session (see `Daemon::route` and `Daemon::attach`).
//!
//! Decisions, all in the audit log:
//! - in the TLS handshake ([`Daemon::handshake_verdict`]): a revoked certificate is refused under
//!   every policy; under `required` so is any certificate not approved (it is recorded as
//!   pending, so an administrator can approve it);
//! - after the handshake ([`Daemon::admit`]): approved appliances are admitted; an unknown or
//!   pending one is admitted under `open`, and under `enrol` is told to wait for approval;
//! - `wradm appliances approve|revoke ID`: admits the appliance's live connections at once
//!   (they get their session without reconnecting), or ends them.

use wayray_protocol::{
    identity,
    sessions::{ApplianceAuthState, ApplianceId, KnownApplianceInfo},
    Notice,
};

use super::{now_ms, Daemon, Shared};
use crate::{
    config::ApplianceAuth,
    store::{ApplianceRecord, AuditEvent, AuditKind},
    transport::{
        client_auth::{CertificatePolicy, HandshakeVerdict},
        ConnEvent,
    },
};

/// The token an appliance really presents: a pseudo-token is always its own certificate's
/// (`pseudo.<short id>`), whatever pseudo-token its Hello named, so no appliance can claim
/// another's; a card's token passes unchanged. Without a certificate (only under `open`) the
/// named token is kept.
pub fn effective_token(identity: Option<&str>, named: Option<String>) -> Option<String> {
    match (identity, named) {
        (Some(fingerprint), Some(token)) if identity::is_pseudo_token(&token) => {
            let own = identity::pseudo_token(fingerprint);
            if token != own {
                tracing::warn!(named = %token, own = %own, "replacing a pseudo-token that is not this appliance's own");
            }
            Some(own)
        }
        (_, named) => named,
    }
}

/// The daemon as the TLS verifier's judge of appliance certificates.
pub struct DaemonPolicy(pub Shared);

impl std::fmt::Debug for DaemonPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonPolicy")
    }
}

impl CertificatePolicy for DaemonPolicy {
    fn handshake_verdict(&self, fingerprint: &str) -> HandshakeVerdict {
        match self.0.lock() {
            Ok(mut daemon) => daemon.handshake_verdict(fingerprint),
            // A broken daemon admits nobody.
            Err(_) => HandshakeVerdict::Unknown,
        }
    }
}

impl Daemon {
    /// The handshake's decision on a certificate (see the module comment). Resumed TLS sessions
    /// skip it; [`Daemon::admit`] checks those after the handshake.
    pub fn handshake_verdict(&mut self, fingerprint: &str) -> HandshakeVerdict {
        let short = identity::short_id(fingerprint).to_owned();
        let record = match self.store.appliance(fingerprint) {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(%err, "cannot read the appliance store");
                None
            }
        };
        let state = self
            .pool_decision(fingerprint)
            .or(record.as_ref().map(|r| r.state));
        match (state, self.appliance_auth) {
            (Some(ApplianceAuthState::Revoked), _) => {
                tracing::warn!(appliance = %short, "refusing a revoked appliance in the handshake");
                self.audit(
                    AuditEvent::new(AuditKind::ApplianceRefused)
                        .appliance(short)
                        .detail("revoked"),
                );
                HandshakeVerdict::Revoked
            }
            (Some(ApplianceAuthState::Approved), _) => HandshakeVerdict::Accept,
            (_, ApplianceAuth::Required) => {
                // Listed as pending, so an administrator can approve it by the id it shows.
                let new = match self.store.appliance_seen(
                    fingerprint,
                    ApplianceAuthState::Pending,
                    None,
                    None,
                    now_ms(),
                ) {
                    Ok((_, new)) => new,
                    Err(err) => {
                        tracing::warn!(%err, "cannot record an appliance");
                        false
                    }
                };
                if new {
                    self.audit(
                        AuditEvent::new(AuditKind::AppliancePending)
                            .appliance(short.clone())
                            .detail("first seen (refused: appliance_auth = required)"),
                    );
                }
                tracing::warn!(appliance = %short, "refusing an appliance that is not approved (appliance_auth = required)");
                self.audit(
                    AuditEvent::new(AuditKind::ApplianceRefused)
                        .appliance(short)
                        .detail("not approved (appliance_auth = required)"),
                );
                HandshakeVerdict::Unknown
            }
            _ => HandshakeVerdict::Accept,
        }
    }

    /// Decides whether the newly connected `appliance` may have sessions, records it as seen,
    /// and tells it why not when it may not. Called before its first route.
    pub(super) fn admit(&mut self, appliance: ApplianceId) {
        let policy = self.appliance_auth;
        let Some(slot) = self.appliances.get(&appliance) else {
            return;
        };
        let Some(fingerprint) = slot.identity.clone() else {
            // No certificate: only `open` lets such a connection through the handshake.
            let admitted = policy == ApplianceAuth::Open;
            if let Some(slot) = self.appliances.get_mut(&appliance) {
                slot.admitted = admitted;
            }
            return;
        };
        let (remote, client_name) = (slot.remote.clone(), slot.client_name.clone());
        let short = identity::short_id(&fingerprint).to_owned();
        let seen = self.store.appliance_seen(
            &fingerprint,
            ApplianceAuthState::Pending,
            Some(&remote),
            Some(&client_name),
            now_ms(),
        );
        let (state, new) = match seen {
            Ok((record, new)) => (record.state, new),
            Err(err) => {
                tracing::error!(%err, "cannot record an appliance; treating it as unknown");
                (ApplianceAuthState::Pending, false)
            }
        };
        let state = self.pool_decision(&fingerprint).unwrap_or(state);
        let who = format!("{short} {remote} {client_name}");
        if new {
            let detail = match policy {
                ApplianceAuth::Open => "first seen (admitted: appliance_auth = open)",
                _ => "first seen (waiting for approval)",
            };
            self.audit(
                AuditEvent::new(AuditKind::AppliancePending)
                    .appliance(who.clone())
                    .detail(detail),
            );
        }
        let admitted = match (state, policy) {
            (ApplianceAuthState::Approved, _) => true,
            (ApplianceAuthState::Pending, ApplianceAuth::Open) => true,
            (ApplianceAuthState::Revoked, _) => {
                // A TLS session resumed from before the revocation skips the verifier.
                tracing::warn!(appliance = %short, "a revoked appliance resumed a TLS session; closing it");
                self.audit(
                    AuditEvent::new(AuditKind::ApplianceRefused)
                        .appliance(who)
                        .detail("revoked"),
                );
                if let Some(slot) = self.appliances.get(&appliance) {
                    let _ = slot.tx.send(ConnEvent::Revoked);
                }
                false
            }
            (ApplianceAuthState::Pending, _) => {
                tracing::info!(appliance = %short, "appliance waits for approval (wradm appliances approve {short})");
                if let Some(slot) = self.appliances.get(&appliance) {
                    let _ = slot
                        .tx
                        .send(ConnEvent::Notice(Notice::AwaitingApproval { id: short }));
                }
                false
            }
        };
        if let Some(slot) = self.appliances.get_mut(&appliance) {
            slot.admitted = admitted;
        }
    }

    /// In a pool, an administrator's decision on this appliance at any server: it overrides
    /// what this server's store says (an approval anywhere admits it everywhere, a revocation
    /// anywhere refuses it everywhere).
    fn pool_decision(&self, fingerprint: &str) -> Option<ApplianceAuthState> {
        self.pool.as_ref()?.appliance_decision(fingerprint)
    }

    /// The one known appliance whose fingerprint starts with `prefix` (8 to 64 hex digits).
    fn find_appliance(&self, prefix: &str) -> Result<ApplianceRecord, String> {
        if !identity::is_id_prefix(prefix) {
            return Err(format!(
                "{prefix:?} is not an appliance id: expected at least 8 hex digits, as `wradm appliances` prints them"
            ));
        }
        let prefix = prefix.to_ascii_lowercase();
        let all = self.store.appliances().map_err(|e| e.to_string())?;
        let mut matching = all
            .into_iter()
            .filter(|a| a.fingerprint.starts_with(&prefix));
        match (matching.next(), matching.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err(format!("no appliance {prefix}")),
            (Some(_), Some(_)) => Err(format!(
                "{prefix} names more than one appliance; give more digits"
            )),
        }
    }

    /// `wradm appliances approve ID`: the appliance gets sessions from now on; if it is
    /// connected, at once.
    pub fn approve_appliance(&mut self, prefix: &str) -> Result<KnownApplianceInfo, String> {
        let record = self.find_appliance(prefix)?;
        let record = self
            .store
            .set_appliance_state(&record.fingerprint, ApplianceAuthState::Approved, now_ms())
            .map_err(|e| e.to_string())?
            .ok_or("the appliance vanished from the store")?;
        let short = identity::short_id(&record.fingerprint).to_owned();
        tracing::info!(appliance = %short, "approved by the administrator");
        if let Some(pool) = &self.pool {
            pool.decide_appliance(&record.fingerprint, true);
        }
        self.audit(
            AuditEvent::new(AuditKind::ApplianceApproved)
                .appliance(short)
                .detail("by the administrator"),
        );
        for id in self.connections_of(&record.fingerprint) {
            let newly = self
                .appliances
                .get_mut(&id)
                .is_some_and(|slot| !std::mem::replace(&mut slot.admitted, true));
            if newly {
                self.route(id);
            }
        }
        Ok(self.known_info(record))
    }

    /// `wradm appliances revoke ID`: the appliance is refused from now on, and its live
    /// connections end now (their sessions keep running, suspended).
    pub fn revoke_appliance(&mut self, prefix: &str) -> Result<KnownApplianceInfo, String> {
        let record = self.find_appliance(prefix)?;
        let record = self
            .store
            .set_appliance_state(&record.fingerprint, ApplianceAuthState::Revoked, now_ms())
            .map_err(|e| e.to_string())?
            .ok_or("the appliance vanished from the store")?;
        let short = identity::short_id(&record.fingerprint).to_owned();
        if let Some(pool) = &self.pool {
            pool.decide_appliance(&record.fingerprint, false);
        }
        let connections = self.connections_of(&record.fingerprint);
        tracing::warn!(appliance = %short, connections = connections.len(), "revoked by the administrator");
        self.audit(
            AuditEvent::new(AuditKind::ApplianceRevoked)
                .appliance(short)
                .detail(format!(
                    "by the administrator; {} live connection(s) ended",
                    connections.len()
                )),
        );
        for id in connections {
            self.detach_appliance(id, "appliance revoked");
            if let Some(slot) = self.appliances.get_mut(&id) {
                slot.admitted = false;
                let _ = slot.tx.send(ConnEvent::Revoked);
            }
        }
        Ok(self.known_info(record))
    }

    /// `wradm appliances`: every appliance known by its certificate, with its live connections.
    pub fn known_appliance_infos(&self) -> Result<Vec<KnownApplianceInfo>, String> {
        let records = self.store.appliances().map_err(|e| e.to_string())?;
        Ok(records.into_iter().map(|r| self.known_info(r)).collect())
    }

    fn known_info(&self, r: ApplianceRecord) -> KnownApplianceInfo {
        let connections = self.connections_of(&r.fingerprint);
        KnownApplianceInfo {
            fingerprint: r.fingerprint,
            state: r.state,
            first_seen_ms: r.first_seen_ms,
            last_seen_ms: r.last_seen_ms,
            last_address: r.last_address,
            client_name: r.client_name,
            connections,
        }
    }

    /// The live connections of the appliance with this fingerprint, oldest first.
    fn connections_of(&self, fingerprint: &str) -> Vec<ApplianceId> {
        let mut ids: Vec<ApplianceId> = self
            .appliances
            .iter()
            .filter(|(_, a)| a.identity.as_deref() == Some(fingerprint))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_tokens_are_the_certificates_own_and_cards_pass() {
        let fp = "0123456789abcdef".repeat(4);
        let own = "pseudo.0123456789abcdef".to_string();
        assert_eq!(
            effective_token(Some(&fp), Some("pseudo.525400123456".into())),
            Some(own.clone())
        );
        assert_eq!(effective_token(Some(&fp), Some(own.clone())), Some(own));
        assert_eq!(
            effective_token(Some(&fp), Some("card.3b8f:04a2".into())),
            Some("card.3b8f:04a2".into())
        );
        assert_eq!(effective_token(Some(&fp), None), None);
        assert_eq!(
            effective_token(None, Some("pseudo.525400123456".into())),
            Some("pseudo.525400123456".into())
        );
    }
}
