//! The appliance's input stream: validated `InputMessage`s go to the compositor's seat.
//!
//! A malformed or implausible event is logged and dropped; the session goes on, because one bad
//! event (a firmware bug, a glitching device) must not cost the user their session.
//!
//! On a lossy link the appliance also sends each event as a datagram; [`InputOrder`] applies
//! each event once, in stream order, whichever copy comes first.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use wayray_protocol::{
    FrameReader, FramingError, InputMessage, StreamKind, DEFAULT_MAX_MESSAGE_LEN,
};

use wayray_protocol::sessions::{ApplianceId, ToSession};

use super::input_order::InputOrder;
use crate::daemon;

/// One connection's input order, shared by the stream reader and the datagram reader.
pub type SharedOrder = Arc<Mutex<InputOrder>>;

/// What both input readers need to apply events.
#[derive(Clone)]
pub struct InputSink {
    pub appliance: ApplianceId,
    pub daemon: daemon::Shared,
    pub output: watch::Receiver<(u32, u32)>,
    pub order: SharedOrder,
}

impl InputSink {
    /// Applies what `step` releases from the input order, in order, under the order's lock (so
    /// the two readers cannot interleave their releases). False once the daemon is gone.
    pub fn apply(&self, step: impl FnOnce(&mut InputOrder) -> Vec<Option<InputMessage>>) -> bool {
        let mut order = self
            .order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in step(&mut order).into_iter().flatten() {
            match validate(&event, &self.output) {
                Ok(()) => match self.daemon.lock() {
                    Ok(mut d) => d.forward_to_session(
                        self.appliance,
                        ToSession::Input {
                            appliance: self.appliance,
                            event,
                        },
                    ),
                    Err(_) => return false,
                },
                Err(err) => tracing::warn!(%err, ?event, "dropping invalid input event"),
            }
        }
        true
    }
}

/// Accepts the appliance's unidirectional streams; reads the input stream until it ends.
pub async fn accept(conn: quinn::Connection, sink: InputSink) {
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
                read_input(stream, &sink).await;
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

async fn read_input(mut stream: quinn::RecvStream, sink: &InputSink) {
    let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE_LEN);
    loop {
        loop {
            match reader.next::<InputMessage>() {
                Ok(Some(event)) => {
                    if !sink.apply(|order| order.stream_message(Some(event))) {
                        return;
                    }
                }
                Ok(None) => break,
                // The length prefix keeps the stream in sync, so only this event is lost (its
                // index still counts).
                Err(FramingError::Malformed(why)) => {
                    tracing::warn!(%why, "dropping malformed input event");
                    if !sink.apply(|order| order.stream_message(None)) {
                        return;
                    }
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
