//! `admin.sock`: one request and one reply per connection, for `wradm`. The socket is 0600, so
//! only the daemon's user (root in production) administers sessions.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use wayray_protocol::{
    framing,
    sessions::{AdminReply, AdminRequest},
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
    let reply = match daemon.lock() {
        Ok(mut d) => answer(&mut d, request),
        Err(_) => AdminReply::Error("daemon state is poisoned".into()),
    };
    if let Ok(bytes) = framing::encode(&reply) {
        let _ = write.write_all(&bytes).await;
    }
}

fn answer(d: &mut super::Daemon, request: AdminRequest) -> AdminReply {
    let done = |r: Result<(), String>| match r {
        Ok(()) => AdminReply::Done,
        Err(e) => AdminReply::Error(e),
    };
    match request {
        AdminRequest::ListSessions => AdminReply::Sessions(d.session_infos()),
        AdminRequest::ShowSession(id) => match d.session_info(id) {
            Some(info) => AdminReply::Session(info),
            None => AdminReply::Error("no such session".into()),
        },
        AdminRequest::Detach(id) => done(d.admin_detach(id)),
        AdminRequest::Kill(id) => done(d.admin_kill(id)),
        AdminRequest::ListAppliances => AdminReply::Appliances(d.appliance_infos()),
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
    }
}
