//! How `wradm` shows what wrsrvd answered: aligned tables and `key: value` lines for people,
//! JSON for scripts. Pure functions of the reply and the current time.

use serde::Serialize;
use wayray_protocol::{
    identity,
    sessions::{
        session_id_string, ApplianceInfo, KnownApplianceInfo, PoolServerInfo, SessionInfo,
        SessionUsage,
    },
};

/// A session as `--json` prints it: ids as `wradm` takes them (16 hex digits), kind and state
/// as lowercase words, times in milliseconds since the Unix epoch.
#[derive(Debug, Serialize)]
pub struct SessionJson<'a> {
    pub id: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub user: Option<&'a str>,
    pub tokens: &'a [String],
    pub appliance: Option<u64>,
    pub pid: Option<u32>,
    pub wayland_display: Option<&'a str>,
    pub created_ms: u64,
    pub changed_ms: u64,
}

impl<'a> SessionJson<'a> {
    pub fn new(s: &'a SessionInfo) -> Self {
        Self {
            id: session_id_string(s.id),
            kind: s.kind.as_str(),
            state: s.state.as_str(),
            user: s.user.as_deref(),
            tokens: &s.tokens,
            appliance: s.appliance,
            pid: s.pid,
            wayland_display: s.wayland_display.as_deref(),
            created_ms: s.created_ms,
            changed_ms: s.changed_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ScreenJson {
    pub width: u32,
    pub height: u32,
}

/// An appliance as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct ApplianceJson<'a> {
    pub id: u64,
    pub remote: &'a str,
    pub client_name: &'a str,
    pub token: Option<&'a str>,
    pub session: Option<String>,
    pub screen: ScreenJson,
    pub connected_ms: u64,
}

impl<'a> ApplianceJson<'a> {
    pub fn new(a: &'a ApplianceInfo) -> Self {
        Self {
            id: a.id,
            remote: &a.remote,
            client_name: &a.client_name,
            token: a.token.as_deref(),
            session: a.session.map(session_id_string),
            screen: ScreenJson {
                width: a.screen.0,
                height: a.screen.1,
            },
            connected_ms: a.connected_ms,
        }
    }
}

/// A known appliance as `--json` prints it: `id` is the short id, `fingerprint` the whole one.
#[derive(Debug, Serialize)]
pub struct KnownApplianceJson<'a> {
    pub id: &'a str,
    pub fingerprint: &'a str,
    pub state: &'static str,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub last_address: Option<&'a str>,
    pub client_name: Option<&'a str>,
    pub connected: bool,
    pub connections: &'a [u64],
}

impl<'a> KnownApplianceJson<'a> {
    pub fn new(a: &'a KnownApplianceInfo) -> Self {
        Self {
            id: identity::short_id(&a.fingerprint),
            fingerprint: &a.fingerprint,
            state: a.state.as_str(),
            first_seen_ms: a.first_seen_ms,
            last_seen_ms: a.last_seen_ms,
            last_address: a.last_address.as_deref(),
            client_name: a.client_name.as_deref(),
            connected: !a.connections.is_empty(),
            connections: &a.connections,
        }
    }
}

/// `wradm appliances`: one row per appliance known by its certificate.
pub fn known_appliances_table(known: &[KnownApplianceInfo], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = known
        .iter()
        .map(|a| {
            vec![
                printable(identity::short_id(&a.fingerprint)),
                a.state.as_str().to_owned(),
                age(now_ms, a.first_seen_ms),
                age(now_ms, a.last_seen_ms),
                or_dash(a.last_address.as_deref().map(printable)),
                or_dash(a.client_name.as_deref().map(printable)),
                if a.connections.is_empty() {
                    "-".to_owned()
                } else {
                    a.connections
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "FIRST",
            "LAST",
            "ADDRESS",
            "CLIENT",
            "CONNECTIONS",
        ],
        &rows,
    )
}

/// `wradm server list`: one row per pool server; `*` marks the one that answered.
pub fn pool_servers_table(servers: &[PoolServerInfo]) -> String {
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let name = if s.this_server {
                format!("{} *", printable(&s.name))
            } else {
                printable(&s.name)
            };
            vec![
                name,
                printable(&s.address),
                s.sessions.to_string(),
                s.capacity.to_string(),
                format!("{}.{}%", s.cpu_permille / 10, s.cpu_permille % 10),
                format!("{}/{} MiB", s.memory_used >> 20, s.memory_total >> 20),
                if s.draining { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "ADDRESS", "SESSIONS", "CAPACITY", "CPU", "MEMORY", "DRAINING",
        ],
        &rows,
    )
}

/// How long ago `then_ms` was, at `now_ms`, in the largest whole unit: "5s", "3m", "2h", "4d".
/// A time in the future (clocks apart) shows as "0s".
pub fn age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 60 * 60 => format!("{}m", s / 60),
        s if s < 48 * 60 * 60 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Strings in a reply come from appliances and users (tokens, client names): control
/// characters are shown escaped so they cannot move the cursor or retitle the terminal.
pub fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        s.to_owned()
    }
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn sessions_table(sessions: &[SessionInfo], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                session_id_string(s.id),
                s.kind.as_str().to_owned(),
                s.state.as_str().to_owned(),
                or_dash(s.user.as_deref().map(printable)),
                tokens(&s.tokens),
                or_dash(s.appliance.map(|a| a.to_string())),
                or_dash(s.pid.map(|p| p.to_string())),
                age(now_ms, s.created_ms),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "KIND",
            "STATE",
            "USER",
            "TOKENS",
            "APPLIANCE",
            "PID",
            "AGE",
        ],
        &rows,
    )
}

pub fn appliances_table(appliances: &[ApplianceInfo], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = appliances
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                printable(&a.remote),
                printable(&a.client_name),
                or_dash(a.token.as_deref().map(printable)),
                or_dash(a.session.map(session_id_string)),
                format!("{}x{}", a.screen.0, a.screen.1),
                age(now_ms, a.connected_ms),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "REMOTE",
            "CLIENT",
            "TOKEN",
            "SESSION",
            "SCREEN",
            "CONNECTED",
        ],
        &rows,
    )
}

fn tokens(tokens: &[String]) -> String {
    if tokens.is_empty() {
        "-".into()
    } else {
        tokens
            .iter()
            .map(|t| printable(t))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Every field of one session, one `key: value` line each, the values aligned.
pub fn session_details(s: &SessionInfo, now_ms: u64) -> String {
    let when = |ms: u64| format!("{ms} ({} ago)", age(now_ms, ms));
    let fields = [
        ("id", session_id_string(s.id)),
        ("kind", s.kind.as_str().to_owned()),
        ("state", s.state.as_str().to_owned()),
        ("user", or_dash(s.user.as_deref().map(printable))),
        ("tokens", tokens(&s.tokens)),
        ("appliance", or_dash(s.appliance.map(|a| a.to_string()))),
        ("pid", or_dash(s.pid.map(|p| p.to_string()))),
        (
            "wayland_display",
            or_dash(s.wayland_display.as_deref().map(printable)),
        ),
        ("created_ms", when(s.created_ms)),
        ("changed_ms", when(s.changed_ms)),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// `cpu_time` and `memory` lines for `wradm show`, aligned like [`session_details`].
pub fn usage_details(u: &SessionUsage) -> String {
    let mib = |b: Option<u64>| match b {
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "-".to_string(),
    };
    let cpu = match u.cpu_usec {
        Some(us) => format!("{:.3} s", us as f64 / 1e6),
        None => "-".to_string(),
    };
    let limit = match u.memory_max {
        Some(_) => mib(u.memory_max),
        None => "none".to_string(),
    };
    let width = "wayland_display:".len();
    format!(
        "{:<width$} {cpu}\n{:<width$} {} now, {} peak, limit {limit}\n",
        "cpu_time:",
        "memory:",
        mib(u.memory_current),
        mib(u.memory_peak),
    )
}

/// The `--json` object of `wradm show` with a `usage` object added (bytes and microseconds).
pub fn json_with_usage(text: &str, u: &SessionUsage) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "usage".into(),
            serde_json::json!({
                "cpu_usec": u.cpu_usec,
                "memory_current": u.memory_current,
                "memory_peak": u.memory_peak,
                "memory_max": u.memory_max,
            }),
        );
    }
    serde_json::to_string_pretty(&value).map_or_else(|_| text.to_string(), |s| s + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayray_protocol::sessions::{SessionKind, SessionState};

    const NOW: u64 = 1_700_000_000_000;

    fn session() -> SessionInfo {
        SessionInfo {
            id: 0xab,
            kind: SessionKind::User,
            state: SessionState::Active,
            user: Some("alice".into()),
            tokens: vec!["card-1".into(), "mac-2".into()],
            appliance: Some(3),
            pid: Some(4242),
            wayland_display: Some("wayland-3".into()),
            created_ms: NOW - 5_000,
            changed_ms: NOW - 2 * 3_600_000,
        }
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(age(NOW, NOW), "0s");
        assert_eq!(age(NOW, NOW - 5_999), "5s");
        assert_eq!(age(NOW, NOW - 59_000), "59s");
        assert_eq!(age(NOW, NOW - 3 * 60_000 - 10), "3m");
        assert_eq!(age(NOW, NOW - 2 * 3_600_000), "2h");
        assert_eq!(age(NOW, NOW - 47 * 3_600_000), "47h");
        assert_eq!(age(NOW, NOW - 4 * 86_400_000), "4d");
        assert_eq!(age(NOW, NOW + 10_000), "0s");
    }

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let t = table(
            &["A", "LONG", "C"],
            &[
                vec!["xxxx".into(), "y".into(), "".into()],
                vec!["x".into(), "yy".into(), "z".into()],
            ],
        );
        assert_eq!(t, "A     LONG  C\nxxxx  y\nx     yy    z\n");
    }

    #[test]
    fn sessions_table_shows_every_column() {
        let mut idle = session();
        idle.id = 0xcd;
        idle.kind = SessionKind::Greeter;
        idle.state = SessionState::Suspended;
        idle.user = None;
        idle.tokens.clear();
        idle.appliance = None;
        idle.pid = None;
        idle.created_ms = NOW - 180_000;
        let t = sessions_table(&[session(), idle], NOW);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "ID",
                "KIND",
                "STATE",
                "USER",
                "TOKENS",
                "APPLIANCE",
                "PID",
                "AGE"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "00000000000000ab",
                "user",
                "active",
                "alice",
                "card-1,mac-2",
                "3",
                "4242",
                "5s"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "00000000000000cd",
                "greeter",
                "suspended",
                "-",
                "-",
                "-",
                "-",
                "3m"
            ]
        );
    }

    #[test]
    fn details_list_every_field() {
        let d = session_details(&session(), NOW);
        assert_eq!(
            d,
            format!(
                "id:              00000000000000ab\n\
                 kind:            user\n\
                 state:           active\n\
                 user:            alice\n\
                 tokens:          card-1,mac-2\n\
                 appliance:       3\n\
                 pid:             4242\n\
                 wayland_display: wayland-3\n\
                 created_ms:      {} (5s ago)\n\
                 changed_ms:      {} (2h ago)\n",
                NOW - 5_000,
                NOW - 7_200_000
            )
        );
    }

    #[test]
    fn control_characters_from_the_wire_are_escaped() {
        assert_eq!(
            printable("card\x1b]0;pwned\x07"),
            "card\\u{1b}]0;pwned\\u{7}"
        );
        assert_eq!(printable("plain ä"), "plain ä");
    }

    #[test]
    fn usage_lines_line_up_with_the_details() {
        let usage = SessionUsage {
            cpu_usec: Some(1_234_567),
            memory_current: Some(12 << 20),
            memory_peak: Some(48 << 20),
            memory_max: Some(4096 << 20),
        };
        assert_eq!(
            usage_details(&usage),
            "cpu_time:        1.235 s\n\
             memory:          12.0 MiB now, 48.0 MiB peak, limit 4096.0 MiB\n"
        );
        let unknown = SessionUsage::default();
        assert_eq!(
            usage_details(&unknown),
            "cpu_time:        -\nmemory:          - now, - peak, limit none\n"
        );
        let json = json_with_usage("{\"id\": \"ab\"}", &usage);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["id"], "ab");
        assert_eq!(value["usage"]["memory_peak"], 48 << 20);
    }
}
