//! The appliance's input stream: validated `InputMessage`s go to the compositor's seat.
//!
//! A malformed or implausible event is logged and dropped; the session goes on, because one bad
//! event (a firmware bug, a glitching device) must not cost the user their session.

use tokio::sync::watch;
use wayray_protocol::{
    FrameReader, FramingError, InputMessage, StreamKind, DEFAULT_MAX_MESSAGE_LEN,
};

use wayray_protocol::sessions::{ApplianceId, ToSession};

use crate::daemon;

/// Accepts the appliance's unidirectional streams; reads the input stream until it ends.
pub async fn accept(
    conn: quinn::Connection,
    appliance: ApplianceId,
    daemon: daemon::Shared,
    output: watch::Receiver<(u32, u32)>,
) {
    loop {
        let mut stream = match conn.accept_uni().await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%err, "no more streams from the appliance");
                return;
            }
        };
        let mut kind = [0u8];
        if let Err(err) = stream.read_exact(&mut kind).await {
            tracing::warn!(%err, "appliance stream closed before saying its kind");
            continue;
        }
        match StreamKind::from_byte(kind[0]) {
            Some(StreamKind::Input) => {
                read_input(stream, appliance, &daemon, &output).await;
            }
            other => {
                tracing::warn!(
                    kind = kind[0],
                    ?other,
                    "ignoring an appliance stream of unexpected kind"
                );
                let _ = stream.stop(1u32.into());
            }
        }
    }
}

async fn read_input(
    mut stream: quinn::RecvStream,
    appliance: ApplianceId,
    daemon: &daemon::Shared,
    output: &watch::Receiver<(u32, u32)>,
) {
    let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE_LEN);
    loop {
        loop {
            match reader.next::<InputMessage>() {
                Ok(Some(event)) => match validate(&event, output) {
                    Ok(()) => match daemon.lock() {
                        Ok(mut d) => {
                            d.forward_to_session(appliance, ToSession::Input { appliance, event })
                        }
                        Err(_) => return,
                    },
                    Err(err) => tracing::warn!(%err, ?event, "dropping invalid input event"),
                },
                Ok(None) => break,
                // The length prefix keeps the stream in sync, so only this event is lost.
                Err(FramingError::Malformed(why)) => {
                    tracing::warn!(%why, "dropping malformed input event")
                }
                Err(err) => {
                    tracing::warn!(%err, "input stream unusable; closing it");
                    let _ = stream.stop(1u32.into());
                    return;
                }
            }
        }
        match stream.read_chunk(reader.wanted().max(1), true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(%err, "input stream ended");
                return;
            }
        }
    }
}

/// Checks `event` against the output's current size: coordinates are in output pixels, and the
/// output follows the appliance's screen.
fn validate(
    event: &InputMessage,
    output: &watch::Receiver<(u32, u32)>,
) -> Result<(), wayray_protocol::input::InputError> {
    let (width, height) = *output.borrow();
    event.validate(width, height)
}
