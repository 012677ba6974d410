//! `/metrics`: Prometheus (OpenMetrics text) in base units. The relay's counters and
//! histograms live in the daemon ([`RelayMetrics`], updated under its lock as frames pass);
//! sessions, appliances and per-session CPU and memory are read at scrape time. Labels are the
//! session's kind, state and id only: never a token or a user name.

use std::time::Instant;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use wayray_protocol::sessions::{session_id_string, SessionKind, SessionState};

use crate::daemon::Shared;

/// The content type of [`scrape`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the daemon counts while relaying; clones share the same values.
#[derive(Clone, Debug)]
pub struct RelayMetrics {
    frames_sent: Counter,
    frame_bytes_sent: Counter,
    card_in_to_frame: Histogram,
    encode: Histogram,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self {
            frames_sent: Counter::default(),
            frame_bytes_sent: Counter::default(),
            // 5 ms … 41 s: a greeter or a session starting can take seconds.
            card_in_to_frame: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            // 100 µs … 0.8 s: a small damage rectangle to a 4K key frame.
            encode: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
        }
    }
}

impl RelayMetrics {
    /// A frame of `len` bytes was handed to an appliance's connection; `card_in`: when that
    /// appliance presented its token, if this is the first frame since.
    pub fn frame_relayed(&self, len: usize, card_in: Option<Instant>) {
        self.frames_sent.inc();
        self.frame_bytes_sent.inc_by(len as u64);
        if let Some(at) = card_in {
            self.card_in_to_frame.observe(at.elapsed().as_secs_f64());
        }
    }

    /// A session reported how long it took to encode a frame.
    pub fn frame_encoded(&self, encode_us: u32) {
        self.encode.observe(f64::from(encode_us) / 1e6);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindState {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabel {
    session: String,
}

/// One session as a scrape sees it.
struct SessionRow {
    id: u64,
    kind: SessionKind,
    state: SessionState,
    pid: Option<u32>,
}

/// The metrics text. The daemon's lock is held only to copy the session list; the sessions'
/// cgroup files are read after it is released.
pub fn scrape(daemon: &Shared) -> Result<String, String> {
    let (rows, appliances, relay) = {
        let d = daemon
            .lock()
            .map_err(|_| "daemon state is poisoned".to_string())?;
        let rows: Vec<SessionRow> = d
            .sessions
            .iter()
            .map(|(id, s)| SessionRow {
                id: *id,
                kind: s.kind,
                state: s.state,
                pid: s.pid,
            })
            .collect();
        (rows, d.appliances.len(), d.metrics.clone())
    };

    let mut registry = Registry::default();
    let sessions = Family::<KindState, Gauge>::default();
    // Every kind and live state, zeros included, so a series does not vanish when it empties.
    for kind in [SessionKind::Greeter, SessionKind::User, SessionKind::Shared] {
        for state in [
            SessionState::Created,
            SessionState::Active,
            SessionState::Suspended,
        ] {
            let n = rows
                .iter()
                .filter(|r| r.kind == kind && r.state == state)
                .count();
            sessions
                .get_or_create(&KindState {
                    kind: kind.as_str().into(),
                    state: state.as_str().into(),
                })
                .set(n as i64);
        }
    }
    registry.register("wayray_sessions", "Sessions by kind and state", sessions);
    let connected = Gauge::<i64>::default();
    connected.set(appliances as i64);
    registry.register(
        "wayray_appliances_connected",
        "Appliances connected now",
        connected,
    );
    registry.register(
        "wayray_card_in_to_frame_seconds",
        "From an appliance presenting a token (connect or card insert) to the first frame of its session handed to its connection",
        relay.card_in_to_frame,
    );
    registry.register(
        "wayray_frames_sent",
        "Frames handed to appliance connections",
        relay.frames_sent,
    );
    registry.register(
        "wayray_frame_bytes_sent",
        "Bytes of the frames handed to appliance connections",
        relay.frame_bytes_sent,
    );
    registry.register(
        "wayray_encode_seconds",
        "Time a session took to encode a frame",
        relay.encode,
    );

    let cpu = Family::<SessionLabel, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let memory = Family::<SessionLabel, Gauge>::default();
    for row in &rows {
        let Some(pid) = row.pid else { continue };
        let id = session_id_string(row.id);
        // Sessions without a cgroup of their own (the shared session, an unconfined one) are
        // left out rather than shown as zero.
        let Some(usage) = crate::cgroup::usage_of_pid(pid, &id) else {
            continue;
        };
        let label = SessionLabel { session: id };
        if let Some(usec) = usage.cpu_usec {
            cpu.get_or_create(&label).inc_by(usec as f64 / 1e6);
        }
        if let Some(bytes) = usage.memory_current {
            memory
                .get_or_create(&label)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
    registry.register(
        "wayray_session_cpu_seconds",
        "CPU time of all of a session's processes, from its cgroup",
        cpu,
    );
    registry.register(
        "wayray_session_memory_bytes",
        "Memory a session's processes use now, from its cgroup",
        memory,
    );

    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| format!("cannot encode the metrics: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_frames_count_and_the_first_one_times_the_card() {
        let m = RelayMetrics::default();
        m.frame_relayed(100, Some(Instant::now()));
        m.frame_relayed(50, None);
        m.frame_encoded(2500);
        let mut registry = Registry::default();
        registry.register("f", "", m.frames_sent.clone());
        registry.register("b", "", m.frame_bytes_sent.clone());
        registry.register("c", "", m.card_in_to_frame.clone());
        registry.register("e", "", m.encode.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("f_total 2\n"), "{text}");
        assert!(text.contains("b_total 150\n"), "{text}");
        assert!(text.contains("c_count 1\n"), "{text}");
        assert!(text.contains("e_sum 0.0025\n"), "{text}");
    }
}
