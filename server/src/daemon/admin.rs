//! `admin.sock`: one request and one reply per connection, for `wradm`. The socket is 0600, so
//! only the daemon's user (root in production) administers sessions.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use wayray_protocol::{
    framing,
    sessions::{session_id_string, AdminReply, AdminRequest, SessionUsage},
};

use super::{
    wire::{self, MessageReader},
    Shared,
};

pub async fn serve(listener: tokio::net::UnixListener, daemon: Shared) {
    wire::accept_loop(listener, daemon, "admin", handle).await
}

async fn handle(stream: tokio::net::UnixStream, daemon: Shared) {
    let (read, mut write) = stream.into_split();
    let mut reader = MessageReader::new(read);
    let request =
        match tokio::time::timeout(Duration::from_secs(5), reader.next::<AdminRequest>()).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(err)) => {
                tracing::warn!(%err, "bad admin request");
                return;
            }
        };
    tracing::info!(?request, "admin request");
    let reply = reply_to(&daemon, request).await;
    if let Ok(bytes) = framing::encode(&reply) {
        let _ = write.write_all(&bytes).await;
    }
}

/// The answer to one admin request, from either front end (`admin.sock`, the HTTP API), so
/// both stay one implementation. Takes the lock only briefly: a session's usage is read from
/// its cgroup's files outside it. Async so requests answered over the network (the pool's)
/// can be added here too.
pub(crate) async fn reply_to(daemon: &Shared, request: AdminRequest) -> AdminReply {
    if let AdminRequest::SessionUsage(id) = request {
        return usage(daemon, id);
    }
    if let AdminRequest::Drain { server, drain } = &request {
        return drain_server(daemon, server, *drain).await;
    }
    match daemon.lock() {
        Ok(mut d) => answer(&mut d, request),
        Err(_) => AdminReply::Error("daemon state is poisoned".into()),
    }
}

/// `SessionUsage`: the pid under the lock, the cgroup's files without it.
fn usage(daemon: &Shared, id: wayray_protocol::sessions::SessionId) -> AdminReply {
    let pid = daemon
        .lock()
        .ok()
        .and_then(|d| d.sessions.get(&id).map(|s| s.pid));
    match pid {
        None => AdminReply::Error(NO_SUCH_SESSION.into()),
        Some(None) => AdminReply::Error("the session has no process yet".into()),
        Some(Some(pid)) => match crate::cgroup::usage_of_pid(pid, &session_id_string(id)) {
            Some(u) => AdminReply::Usage(SessionUsage {
                cpu_usec: u.cpu_usec,
                memory_current: u.memory_current,
                memory_peak: u.memory_peak,
                memory_max: u.memory_max,
            }),
            None => AdminReply::Error("the session is not in a cgroup of its own".into()),
        },
    }
}

/// The error for a session id the daemon does not know (the HTTP API answers it with 404).
pub(crate) const NO_SUCH_SESSION: &str = "no such session";

/// The error of pool requests on a server without a pool (the HTTP API answers it with 409).
pub(crate) const NOT_IN_A_POOL: &str = "this server is not in a pool (no [pool] in its config)";

fn answer(d: &mut super::Daemon, request: AdminRequest) -> AdminReply {
    let done = |r: Result<(), String>| match r {
        Ok(()) => AdminReply::Done,
        Err(e) => AdminReply::Error(e),
    };
    match request {
        AdminRequest::ListSessions => AdminReply::Sessions(d.session_infos()),
        AdminRequest::ShowSession(id) => match d.session_info(id) {
            Some(info) => AdminReply::Session(info),
            None => AdminReply::Error(NO_SUCH_SESSION.into()),
        },
        AdminRequest::Detach(id) => done(d.admin_detach(id)),
        AdminRequest::Kill(id) => done(d.admin_kill(id)),
        AdminRequest::ListAppliances => AdminReply::Appliances(d.appliance_infos()),
        AdminRequest::SessionUsage(_) => AdminReply::Error("answered without the lock".into()),
        AdminRequest::ListKnownAppliances => match d.known_appliance_infos() {
            Ok(list) => AdminReply::KnownAppliances(list),
            Err(e) => AdminReply::Error(e),
        },
        AdminRequest::ApproveAppliance(id) => match d.approve_appliance(&id) {
            Ok(info) => AdminReply::KnownAppliance(info),
            Err(e) => AdminReply::Error(e),
        },
        AdminRequest::RevokeAppliance(id) => match d.revoke_appliance(&id) {
            Ok(info) => AdminReply::KnownAppliance(info),
            Err(e) => AdminReply::Error(e),
        },
        AdminRequest::PoolServers => match d.pool_servers() {
            Ok(list) => AdminReply::PoolServers(list),
            Err(e) => AdminReply::Error(e),
        },
        AdminRequest::Drain { .. } => AdminReply::Error("answered without the lock".into()),
    }
}

/// `wradm server drain|undrain NAME`: written to etcd by the pool task, so answered after it
/// (outside the daemon's lock).
pub async fn drain_server(daemon: &Shared, server: &str, drain: bool) -> AdminReply {
    let answer = match daemon.lock() {
        Ok(d) => match &d.pool {
            Some(pool) => Ok(pool.drain(server, drain)),
            None => Err(NOT_IN_A_POOL.to_string()),
        },
        Err(_) => Err("daemon state is poisoned".into()),
    };
    match answer {
        Err(e) => AdminReply::Error(e),
        Ok(rx) => match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(Ok(()))) => AdminReply::Done,
            Ok(Ok(Err(e))) => AdminReply::Error(e),
            Ok(Err(_)) | Err(_) => AdminReply::Error("the pool did not answer".into()),
        },
    }
}
