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
