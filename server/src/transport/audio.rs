//! The appliance's microphone: QUIC datagrams in, checked packets to the session it shows.
//! (Playback goes the other way straight from the session relay, one datagram per packet:
//! `Daemon::relay_audio`, so it never waits behind a frame the connection task is writing.)
//!
//! A bad datagram is logged and dropped: one lost 10 ms of sound, not the connection.

use wayray_protocol::{
    sessions::{ApplianceId, ToSession},
    Datagram,
};

use crate::daemon;

/// Reads the appliance's datagrams until the connection ends.
pub async fn microphone(conn: quinn::Connection, appliance: ApplianceId, daemon: daemon::Shared) {
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
            Ok(Datagram::Playback(_)) => {
                if !std::mem::replace(&mut complained, true) {
                    tracing::warn!("the appliance sent playback audio; dropping it");
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
