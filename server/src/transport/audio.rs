//! The appliance's microphone: QUIC datagrams in, checked packets to the session it shows.
//! (Playback goes the other way straight from the session relay, one datagram per packet:
//! `Daemon::relay_audio`, so it never waits behind a frame the connection task is writing.)
//!
//! A bad datagram is logged and dropped: one lost 10 ms of sound, not the connection.
//!
//! The same datagrams bring copies of input events on a lossy link (`Datagram::Input`), handed
//! to the connection's input order.

use wayray_protocol::{
    sessions::{ApplianceId, ToSession},
    Datagram,
};

use super::input::InputSink;
use crate::daemon;

/// Reads the appliance's datagrams until the connection ends.
pub async fn microphone(
    conn: quinn::Connection,
    appliance: ApplianceId,
    daemon: daemon::Shared,
    input: InputSink,
) {
    let mut complained = false;
    loop {
        let bytes = match conn.read_datagram().await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::debug!(%err, "no more datagrams from the appliance");
                return;
            }
        };
        match Datagram::decode(&bytes) {
            Ok(Datagram::Microphone(packet)) => {
                if let Ok(mut d) = daemon.lock() {
                    d.forward_to_session(appliance, ToSession::Microphone { appliance, packet });
                }
            }
            Ok(Datagram::Input { seq, event }) => {
                if !input.apply(|order| order.datagram_copy(seq, event)) {
                    return;
                }
            }
            Ok(Datagram::Playback(_) | Datagram::Frame { .. }) => {
                if !std::mem::replace(&mut complained, true) {
                    tracing::warn!("the appliance sent playback audio or a frame; dropping it");
                }
            }
            Err(err) => {
                if !std::mem::replace(&mut complained, true) {
                    tracing::warn!(%err, len = bytes.len(), "dropping a malformed datagram");
                }
            }
        }
    }
}
