//! `sessions.sock`: session compositors connect here, register, and relay frames.

use std::sync::Arc;

use tracing::Instrument;
use wayray_protocol::sessions::{session_id_string, FromSession, SessionHello, ToSession};

use super::{
    wire::{self, MessageReader},
    Shared,
};
use crate::transport::ConnEvent;

/// Accepts session processes until the listener fails.
pub async fn serve(listener: tokio::net::UnixListener, daemon: Shared) {
    wire::accept_loop(listener, daemon, "sessions", handle).await
}

async fn handle(stream: tokio::net::UnixStream, daemon: Shared) {
    let (read, write) = stream.into_split();
    let mut reader = MessageReader::new(read);
    let hello = match reader.next::<SessionHello>().await {
        Ok(Some(hello)) => hello,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(%err, "bad hello on the sessions socket");
            return;
        }
    };
    let id = hello.session;
    let span = tracing::info_span!("session", id = %session_id_string(id));
    async move {
        let link = wire::spawn_writer::<ToSession>(write, "session link");
        let registered = match daemon.lock() {
            Ok(mut d) => d.session_registered(
                id,
                &hello.secret,
                hello.pid,
                hello.wayland_display.clone(),
                link,
                hello.reconnect,
            ),
            Err(_) => return,
        };
        if let Err(why) = registered {
            tracing::warn!(why, pid = hello.pid, "refused a session process");
            return;
        }
        loop {
            match reader.next::<FromSession>().await {
                Ok(Some(FromSession::Frame {
                    appliance,
                    seq,
                    bytes,
                    encode_us,
                })) => {
                    if let Ok(d) = daemon.lock() {
                        d.metrics.frame_encoded(encode_us);
                        d.relay(
                            id,
                            appliance,
                            ConnEvent::Frame {
                                seq,
                                bytes: Arc::from(bytes),
                            },
                        );
                    }
                }
                Ok(Some(FromSession::Cursor { appliance, bytes })) => {
                    if let Ok(d) = daemon.lock() {
                        d.relay(
                            id,
                            appliance,
                            ConnEvent::Cursor {
                                bytes: Arc::from(bytes),
                            },
                        );
                    }
                }
                Ok(Some(FromSession::Audio { appliance, bytes })) => {
                    if let Ok(d) = daemon.lock() {
                        d.relay_audio(id, appliance, bytes.into());
                    }
                }
                Ok(Some(FromSession::Microphone { appliance, open })) => {
                    if let Ok(d) = daemon.lock() {
                        d.relay(id, appliance, ConnEvent::Microphone { open });
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%err, "session link broken");
                    break;
                }
            }
        }
        if let Ok(mut d) = daemon.lock() {
            d.session_link_lost(id);
        }
    }
    .instrument(span)
    .await
}
