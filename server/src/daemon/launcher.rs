//! `launcher.sock`: the session launcher (`wrsessd`) connects here. The daemon asks it for
//! greeters and user sessions; it reports logins and session processes coming and going.

use wayray_protocol::sessions::{FromLauncher, LauncherHello, ToLauncher};

use super::{
    wire::{self, MessageReader},
    Shared,
};

pub async fn serve(listener: tokio::net::UnixListener, daemon: Shared) {
    wire::accept_loop(listener, daemon, "launcher", handle).await
}

async fn handle(stream: tokio::net::UnixStream, daemon: Shared) {
    // Only root (or the daemon's own user) may launch sessions for others.
    let uid = wire::peer_uid(&stream);
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if uid != Some(0) && uid != Some(me) {
        tracing::warn!(?uid, "refused a launcher connection from another user");
        return;
    }
    let (read, write) = stream.into_split();
    let mut reader = MessageReader::new(read);
    let hello = match reader.next::<LauncherHello>().await {
        Ok(Some(hello)) => hello,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(%err, "bad hello from the launcher");
            return;
        }
    };
    tracing::info!(pid = hello.pid, "session launcher connected");
    let tx = wire::spawn_writer::<ToLauncher>(write, "launcher");
    if let Ok(mut d) = daemon.lock() {
        d.launcher = Some(tx);
        // Appliances that came before the launcher get their greeters now.
        let waiting: Vec<u64> = d
            .appliances
            .iter()
            .filter(|(_, a)| a.session.is_none() && a.token.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            d.route(id);
        }
    }
    loop {
        let msg = match reader.next::<FromLauncher>().await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(%err, "launcher link broken");
                break;
            }
        };
        let Ok(mut d) = daemon.lock() else { return };
        match msg {
            FromLauncher::Authenticated {
                greeter,
                token,
                user,
            } => d.authenticated(greeter, &token, &user),
            FromLauncher::AuthFailed {
                greeter,
                token,
                user,
                reason,
            } => d.auth_failed(greeter, &token, &user, &reason),
            FromLauncher::Started { session, pid } => d.session_started(session, pid),
            FromLauncher::Exited { session, status } => d.session_exited(session, &status),
            FromLauncher::Failed { session, reason } => {
                d.session_exited(session, &format!("failed to start: {reason}"))
            }
            FromLauncher::Unconfined { session, reason } => d.unconfined(session, &reason),
            FromLauncher::Unlocked { session, user } => d.unlock_result(session, &user, None),
            FromLauncher::UnlockFailed {
                session,
                user,
                reason,
            } => d.unlock_result(session, &user, Some(&reason)),
        }
    }
    tracing::warn!("session launcher disconnected");
    if let Ok(mut d) = daemon.lock() {
        d.launcher = None;
    }
}
