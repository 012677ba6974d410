//! `sessions.sock`: session compositors connect here, register, and relay frames.

use bytes::Bytes;
use tracing::Instrument;
use wayray_protocol::{
    frame_relay, framing,
    sessions::{session_id_string, ApplianceId, FromSession, SessionHello, ToSession},
    FramingError,
};

use super::{
    quiet_socket::QuietSocket,
    wire::{self, MessageReader},
    Shared,
};
use crate::transport::ConnEvent;

/// Accepts session processes until the listener fails.
pub async fn serve(listener: tokio::net::UnixListener, daemon: Shared) {
    wire::accept_loop(listener, daemon, "sessions", handle).await
}

async fn handle(stream: tokio::net::UnixStream, daemon: Shared) {
    // Whose session this is: its PC/SC socket serves that user alone.
    let uid = wire::peer_uid(&stream);
    let socket = match QuietSocket::new(stream) {
        Ok(socket) => socket,
        Err(err) => {
            tracing::warn!(%err, "cannot watch a session's socket");
            return;
        }
    };
    let mut reader = MessageReader::quiet(socket.clone());
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
        let link = wire::spawn_quiet_writer::<ToSession>(socket, "session link");
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
        if let (Some(uid), Ok(mut d)) = (uid, daemon.lock()) {
            d.pcsc_session_started(id, uid);
        }
        loop {
            let body = match reader.next_body().await {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%err, "session link broken");
                    break;
                }
            };
            match incoming(body) {
                Ok(Incoming::Frame {
                    appliance,
                    seq,
                    bytes,
                    encode_us,
                }) => {
                    if let Ok(d) = daemon.lock() {
                        d.metrics.frame_encoded(encode_us);
                        d.relay(id, appliance, ConnEvent::Frame { seq, bytes });
                    }
                }
                Ok(Incoming::Other(FromSession::Frame {
                    appliance,
                    seq,
                    bytes,
                    encode_us,
                })) => {
                    // `incoming` reads every frame in place; this arm only keeps the match whole.
                    if let Ok(d) = daemon.lock() {
                        d.metrics.frame_encoded(encode_us);
                        let bytes = Bytes::from(bytes);
                        d.relay(id, appliance, ConnEvent::Frame { seq, bytes });
                    }
                }
                Ok(Incoming::Other(FromSession::Cursor { appliance, bytes })) => {
                    if let Ok(d) = daemon.lock() {
                        d.relay(
                            id,
                            appliance,
                            ConnEvent::Cursor {
                                bytes: Bytes::from(bytes),
                            },
                        );
                    }
                }
                Ok(Incoming::Other(FromSession::Audio { appliance, bytes })) => {
                    if let Ok(d) = daemon.lock() {
                        d.relay_audio(id, appliance, bytes.into());
                    }
                }
                Ok(Incoming::Other(FromSession::Microphone { appliance, open })) => {
                    if let Ok(d) = daemon.lock() {
                        d.relay(id, appliance, ConnEvent::Microphone { open });
                    }
                }
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

/// A message from a session, its frame (if it is one) still in the buffer it was read into.
#[derive(Debug, PartialEq)]
enum Incoming {
    Frame {
        appliance: ApplianceId,
        seq: u64,
        /// The framed `DisplayMessage::Frame`, a slice of the message: relayed as it is.
        bytes: Bytes,
        encode_us: u32,
    },
    Other(FromSession),
}

/// Decodes one message body; a frame's bytes are not copied out of it.
fn incoming(body: Bytes) -> Result<Incoming, FramingError> {
    match frame_relay::peek_frame(&body) {
        Some(frame) => {
            let frame = frame?;
            Ok(Incoming::Frame {
                appliance: frame.appliance,
                seq: frame.seq,
                bytes: body.slice_ref(frame.bytes),
                encode_us: frame.encode_us,
            })
        }
        None => framing::decode_body(&body).map(Incoming::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_relayed_as_a_slice_of_the_message_and_the_rest_decode_in_full() {
        let frame = vec![9u8; 1000];
        let message = framing::encode(&FromSession::Frame {
            appliance: 4,
            seq: 77,
            bytes: frame.clone(),
            encode_us: 1234,
        })
        .expect("encode");
        let body = Bytes::copy_from_slice(&message[framing::HEADER_LEN..]);
        let Ok(Incoming::Frame {
            appliance,
            seq,
            bytes,
            encode_us,
        }) = incoming(body.clone())
        else {
            panic!("not read as a frame");
        };
        assert_eq!((appliance, seq, encode_us), (4, 77, 1234));
        assert_eq!(bytes, frame);
        let inside = body.as_ptr_range();
        assert!(inside.contains(&bytes.as_ptr()), "the frame was copied");

        let cursor = FromSession::Cursor {
            appliance: 4,
            bytes: vec![1, 2],
        };
        let message = framing::encode(&cursor).expect("encode");
        let body = Bytes::copy_from_slice(&message[framing::HEADER_LEN..]);
        assert_eq!(incoming(body), Ok(Incoming::Other(cursor)));

        let cut = Bytes::copy_from_slice(&message[framing::HEADER_LEN..message.len() - 1]);
        assert!(incoming(cut).is_err());
    }
}
