//! Checking a user name and password with PAM: `authenticate` then `acct_mgmt` (expired or
//! locked accounts fail here even with the right password).
//!
//! Blocking, and slow on purpose when it fails (pam_unix waits about 2 s): call it on a thread
//! of its own. The process must be root (or in group `shadow`) for pam_unix to read
//! `/etc/shadow`.

use std::ffi::OsString;

use pam_client::{conv_mock::Conversation, Context, Flag, SessionToken};
use zeroize::Zeroize;

/// Longest user name we hand to PAM; longer ones are refused without asking it.
pub const MAX_USERNAME_LEN: usize = 256;

/// `Ok(user)` with the name PAM settled on (modules may map the typed name), or why not, for
/// the audit log only: the greeter is told nothing more than "wrong user name or password".
pub fn authenticate(service: &str, username: &str, password: &str) -> Result<String, String> {
    check_username(username)?;
    if password.contains('\0') {
        return Err("password contains a NUL byte".to_string());
    }
    let conversation = Conversation::with_credentials(username, password);
    let mut context = Context::new(service, Some(username), conversation)
        .map_err(|e| format!("PAM service {service:?} could not start: {e}"))?;
    let result = context
        .authenticate(Flag::DISALLOW_NULL_AUTHTOK)
        .map_err(|e| format!("authentication failed: {e}"))
        .and_then(|()| {
            context
                .acct_mgmt(Flag::DISALLOW_NULL_AUTHTOK)
                .map_err(|e| format!("account not usable: {e}"))
        })
        .map(|()| context.user().unwrap_or_else(|_| username.to_string()));
    context.conversation_mut().password.zeroize();
    result
}

/// A user's PAM session (`pam_setcred` + `pam_open_session`), open for as long as their desktop
/// runs, so pam_limits, pam_env and the like apply to it as to any login. Closed (with
/// `pam_close_session` and the credentials deleted) when the session ends.
pub struct PamSession {
    context: Context<Conversation>,
    token: Option<SessionToken>,
}

impl PamSession {
    /// Opens the session for `user` (already authenticated by the greeter's login). Returns it
    /// with the environment PAM modules set (pam_env), which the session gets too.
    pub fn open(service: &str, user: &str) -> Result<(Self, Vec<(String, OsString)>), String> {
        check_username(user)?;
        let mut context = Context::new(service, Some(user), Conversation::default())
            .map_err(|e| format!("PAM service {service:?} could not start: {e}"))?;
        let session = context
            .open_session(Flag::SILENT)
            .map_err(|e| format!("PAM could not open the session: {e}"))?;
        let list = session.envlist();
        let env: Vec<(String, OsString)> = list
            .iter_tuples()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_os_string()))
            .collect();
        let token = session.leak();
        Ok((
            PamSession {
                context,
                token: Some(token),
            },
            env,
        ))
    }

    /// For a session adopted from an earlier launcher: its PAM handle died with that launcher,
    /// so a fresh one closes it (modules such as pam_limits and pam_env keep no state; those
    /// that do may log that they never saw it open).
    pub fn adopted(service: &str, user: &str) -> Result<Self, String> {
        check_username(user)?;
        let context = Context::new(service, Some(user), Conversation::default())
            .map_err(|e| format!("PAM service {service:?} could not start: {e}"))?;
        Ok(PamSession {
            context,
            token: Some(SessionToken::FullSession),
        })
    }

    /// `pam_close_session` and `pam_setcred(DELETE_CRED)`.
    pub fn close(mut self) -> Result<(), String> {
        let Some(token) = self.token.take() else {
            return Ok(());
        };
        let session = self.context.unleak_session(token);
        session
            .close(Flag::SILENT)
            .map_err(|e| format!("PAM could not close the session: {e}"))
    }
}

/// Every limit pam_limits can set.
const RESOURCES: [libc::__rlimit_resource_t; 16] = [
    libc::RLIMIT_CPU,
    libc::RLIMIT_FSIZE,
    libc::RLIMIT_DATA,
    libc::RLIMIT_STACK,
    libc::RLIMIT_CORE,
    libc::RLIMIT_RSS,
    libc::RLIMIT_NPROC,
    libc::RLIMIT_NOFILE,
    libc::RLIMIT_MEMLOCK,
    libc::RLIMIT_AS,
    libc::RLIMIT_LOCKS,
    libc::RLIMIT_SIGPENDING,
    libc::RLIMIT_MSGQUEUE,
    libc::RLIMIT_NICE,
    libc::RLIMIT_RTPRIO,
    libc::RLIMIT_RTTIME,
];

/// The process's resource limits and nice value, saved before `pam_open_session` (pam_limits
/// sets them on the calling process, which is the launcher) and put back once the session's
/// process has inherited them.
pub struct ProcessLimits {
    limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    nice: Option<i32>,
}

impl ProcessLimits {
    pub fn save() -> Self {
        let limits = RESOURCES
            .iter()
            .filter_map(|&resource| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit writes one rlimit.
                (unsafe { libc::getrlimit(resource, &mut limit) } == 0).then_some((resource, limit))
            })
            .collect();
        // SAFETY: clearing errno and getpriority have no preconditions.
        let nice = unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            (*libc::__errno_location() == 0).then_some(nice)
        };
        ProcessLimits { limits, nice }
    }

    pub fn restore(&self) {
        for (resource, limit) in &self.limits {
            // SAFETY: setrlimit reads one rlimit; we are root, so raising back works.
            if unsafe { libc::setrlimit(*resource, limit) } != 0 {
                tracing::warn!(
                    resource,
                    err = %std::io::Error::last_os_error(),
                    "cannot restore a resource limit PAM changed"
                );
            }
        }
        if let Some(nice) = self.nice {
            // SAFETY: setpriority has no memory-safety preconditions.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
        }
    }
}

/// Names PAM should never see: empty, absurdly long, or with bytes no account name has.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("empty user name".to_string());
    }
    if username.len() > MAX_USERNAME_LEN {
        return Err(format!("user name longer than {MAX_USERNAME_LEN} bytes"));
    }
    if username
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == ':' || c == '/')
    {
        return Err("user name contains characters no account has".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_user_names_never_reach_pam() {
        for bad in ["", "a b", "a\nb", "a:b", "../x", "a\0b"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_username(&"x".repeat(MAX_USERNAME_LEN + 1)).is_err());
        for good in ["alice", "wrtest_123", "first.last", "user@REALM"] {
            assert!(check_username(good).is_ok(), "{good:?}");
        }
    }
}
