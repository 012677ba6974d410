//! `wradm`: the WayRay admin CLI. One request to wrsrvd's admin socket (or, with `--server`,
//! its HTTP admin API) per run, its answer printed as a table, `key: value` lines or JSON.

mod client;
mod http;
mod view;

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, Subcommand};
use wayray_protocol::sessions::{
    parse_session_id, session_id_string, AdminReply, AdminRequest, SessionId,
};

/// wrsrvd's default `[api] token_file` (its default state directory's `api-token`).
const DEFAULT_TOKEN_FILE: &str = "/var/lib/wayray/api-token";

/// Where wrsrvd puts `admin.sock` when neither --socket nor WAYRAY_ADMIN_SOCKET says otherwise
/// and it runs as a system service (no `XDG_RUNTIME_DIR`).
const SYSTEM_RUN_DIR: &str = "/run/wayray";

/// WayRay admin: list and control the sessions and appliances of a running wrsrvd.
///
/// Sends one request to wrsrvd's admin socket and prints the answer. The socket is only open to
/// the user wrsrvd runs as, so run wradm as that user (root for a system service). With
/// --server, the request goes to wrsrvd's HTTP admin API instead, with the bearer token read
/// from --token-file.
///
/// Exit status: 0 done; 1 wrsrvd refused or failed the request (its message is printed), did
/// not answer in time, or answered garbage; 2 wrsrvd is not reachable, or the command line is
/// wrong.
#[derive(Debug, Parser)]
#[command(name = "wradm", version, about, long_about)]
struct Cli {
    /// wrsrvd's admin socket. Default: $WAYRAY_RUN_DIR/admin.sock, else
    /// $XDG_RUNTIME_DIR/wayray/admin.sock, else /run/wayray/admin.sock (where wrsrvd puts it).
    #[arg(long, global = true, env = "WAYRAY_ADMIN_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Use wrsrvd's HTTP admin API at this URL (`http://HOST:PORT`, as wrsrvd prints in
    /// WAYRAY_API=) instead of the admin socket; every command works the same.
    #[arg(long, global = true, env = "WAYRAY_SERVER", value_name = "URL", value_parser = parse_url)]
    server: Option<String>,
    /// The admin API's bearer token file (wrsrvd's `[api] token_file`), read with --server.
    #[arg(
        long,
        global = true,
        env = "WAYRAY_API_TOKEN_FILE",
        value_name = "FILE",
        default_value = DEFAULT_TOKEN_FILE
    )]
    token_file: PathBuf,
    /// How long to wait for wrsrvd's answer, in seconds (fractions allowed).
    #[arg(long, global = true, value_name = "SECONDS", default_value = "10", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the sessions.
    ///
    /// Columns: ID, KIND (greeter, user, shared), STATE (created, active, suspended,
    /// destroyed), USER, bound TOKENS, the APPLIANCE showing it, the compositor's PID, and AGE
    /// since it was created.
    Sessions {
        /// Print a JSON array instead of a table (ids as 16 hex digits, times in ms since the
        /// Unix epoch).
        #[arg(long)]
        json: bool,
    },
    /// Show every field of one session, one `key: value` per line.
    Show {
        /// The session's id, as `wradm sessions` prints it (16 hex digits).
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: SessionId,
        /// Print a JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Take a session off its appliance; it keeps running.
    ///
    /// The session is suspended until its token is seen at an appliance again.
    Detach {
        /// The session's id, as `wradm sessions` prints it.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: SessionId,
    },
    /// End a session and its clients.
    ///
    /// Its compositor and all its clients are stopped and its tokens unbound.
    Kill {
        /// The session's id, as `wradm sessions` prints it.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: SessionId,
    },
    /// List the connected appliances (connections).
    ///
    /// Columns: connection ID, REMOTE address, CLIENT name and version, the TOKEN it
    /// presented, the SESSION it shows, its SCREEN size, and how long ago it CONNECTED.
    Connections {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the appliances known by their certificates, or approve or revoke one.
    ///
    /// Every appliance makes a key pair and certificate on its first start; its ID is the
    /// SHA-256 fingerprint of that public key (the first 16 hex digits shown; it also shows on
    /// the appliance's screen while it waits). Columns: ID, STATE (pending, approved,
    /// revoked), FIRST and LAST seen, last ADDRESS, CLIENT, and its live CONNECTIONS (ids as
    /// `wradm connections` prints them; - when not connected). Whether a pending appliance
    /// gets sessions depends on the server's `appliance_auth` policy.
    #[command(args_conflicts_with_subcommands = true)]
    Appliances {
        #[command(subcommand)]
        action: Option<ApplianceAction>,
        /// Print a JSON array instead of a table (full fingerprints, times in ms since the
        /// Unix epoch).
        #[arg(long)]
        json: bool,
    },
    /// The servers of this server's pool: list them, or stop or resume placing new sessions on
    /// one (`drain`, `undrain`).
    #[command(subcommand)]
    Server(ServerAction),
}

#[derive(Debug, Subcommand)]
enum ServerAction {
    /// List the pool's servers.
    ///
    /// Columns: NAME (`*` marks the server answering), ADDRESS, SESSIONS it runs and its
    /// CAPACITY, CPU busy, MEMORY used of total, and whether it is DRAINING.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Place no new sessions on this server; its sessions keep running there.
    Drain {
        /// The server's pool name, as `wradm server list` prints it.
        name: String,
    },
    /// Place new sessions on this server again.
    Undrain {
        /// The server's pool name, as `wradm server list` prints it.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApplianceAction {
    /// Let this appliance have sessions. If it is connected and waiting, it gets its session
    /// at once.
    Approve {
        /// The appliance's id, or any unique prefix of its fingerprint of 8 or more hex digits.
        #[arg(value_name = "ID", value_parser = parse_appliance_id)]
        id: String,
    },
    /// Refuse this appliance from now on. Its live connection ends at once; its session keeps
    /// running, suspended. `approve` lets it in again.
    Revoke {
        /// The appliance's id, or any unique prefix of its fingerprint of 8 or more hex digits.
        #[arg(value_name = "ID", value_parser = parse_appliance_id)]
        id: String,
    },
}

fn parse_appliance_id(s: &str) -> Result<String, String> {
    if wayray_protocol::identity::is_id_prefix(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is not an appliance id: expected 8 to 64 hex digits, as `wradm appliances` prints them"
        ))
    }
}

fn parse_id(s: &str) -> Result<SessionId, String> {
    let valid = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parse_session_id(s) {
        Some(id) if valid => Ok(id),
        _ => Err(format!(
            "{s:?} is not a session id: expected up to 16 hex digits, as `wradm sessions` prints them"
        )),
    }
}

fn parse_url(s: &str) -> Result<String, String> {
    match s.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err(format!(
            "{s:?} is not an http:// URL (wrsrvd's admin API speaks plain HTTP: http://HOST:PORT)"
        )),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s} is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The socket wrsrvd uses by default, resolved the way wrsrvd resolves its run directory.
fn default_socket() -> PathBuf {
    let run_dir = match (
        std::env::var_os("WAYRAY_RUN_DIR"),
        std::env::var_os("XDG_RUNTIME_DIR"),
    ) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(dir)) => PathBuf::from(dir).join("wayray"),
        (None, None) => PathBuf::from(SYSTEM_RUN_DIR),
    };
    run_dir.join("admin.sock")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where requests go: the admin socket, or the HTTP admin API with `--server`.
enum Backend {
    Socket(PathBuf),
    Http(http::Api),
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error(transparent)]
    Socket(#[from] client::ClientError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

impl ExchangeError {
    fn unreachable(&self) -> bool {
        match self {
            ExchangeError::Socket(e) => e.unreachable(),
            ExchangeError::Http(e) => e.unreachable(),
        }
    }
}

impl Backend {
    fn exchange(
        &self,
        request: &AdminRequest,
        timeout: Duration,
    ) -> Result<AdminReply, ExchangeError> {
        Ok(match self {
            Backend::Socket(socket) => client::exchange(socket, request, timeout)?,
            Backend::Http(api) => api.exchange(request)?,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let backend = match &cli.server {
        Some(url) => match http::Api::new(url, cli.token_file.clone(), cli.timeout) {
            Ok(api) => Backend::Http(api),
            Err(err) => {
                eprintln!("wradm: {err}");
                return ExitCode::from(2);
            }
        },
        None => Backend::Socket(cli.socket.clone().unwrap_or_else(default_socket)),
    };
    let request = match &cli.command {
        Command::Sessions { .. } => AdminRequest::ListSessions,
        Command::Show { id, .. } => AdminRequest::ShowSession(*id),
        Command::Detach { id } => AdminRequest::Detach(*id),
        Command::Kill { id } => AdminRequest::Kill(*id),
        Command::Connections { .. } => AdminRequest::ListAppliances,
        Command::Appliances { action: None, .. } => AdminRequest::ListKnownAppliances,
        Command::Appliances {
            action: Some(ApplianceAction::Approve { id }),
            ..
        } => AdminRequest::ApproveAppliance(id.clone()),
        Command::Appliances {
            action: Some(ApplianceAction::Revoke { id }),
            ..
        } => AdminRequest::RevokeAppliance(id.clone()),
        Command::Server(ServerAction::List { .. }) => AdminRequest::PoolServers,
        Command::Server(ServerAction::Drain { name }) => AdminRequest::Drain {
            server: name.clone(),
            drain: true,
        },
        Command::Server(ServerAction::Undrain { name }) => AdminRequest::Drain {
            server: name.clone(),
            drain: false,
        },
    };
    let reply = match backend.exchange(&request, cli.timeout) {
        Ok(reply) => reply,
        Err(err) => {
            eprintln!("wradm: {err}");
            return if err.unreachable() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            };
        }
    };
    match print(&cli.command, reply, now_ms()) {
        Ok(mut text) => {
            if let Command::Show { id, json } = &cli.command {
                // CPU and memory come from the session's cgroup, asked for separately; a
                // daemon that cannot tell (no cgroup, older version) leaves them out.
                let usage = match backend.exchange(&AdminRequest::SessionUsage(*id), cli.timeout) {
                    Ok(AdminReply::Usage(usage)) => Some(usage),
                    _ => None,
                };
                if let Some(usage) = usage {
                    text = if *json {
                        view::json_with_usage(&text, &usage)
                    } else {
                        text + &view::usage_details(&usage)
                    };
                }
            }
            let mut out = std::io::stdout().lock();
            // A closed pipe (`wradm sessions | head`) is not worth an error.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("wradm: {message}");
            ExitCode::from(1)
        }
    }
}

/// What to print for `reply` to `command`, or the error message.
fn print(command: &Command, reply: AdminReply, now_ms: u64) -> Result<String, String> {
    let json = |value: Result<String, serde_json::Error>| {
        value
            .map(|s| s + "\n")
            .map_err(|e| format!("cannot write JSON: {e}"))
    };
    match (command, reply) {
        (_, AdminReply::Error(message)) => Err(match command {
            Command::Show { id, .. } | Command::Detach { id } | Command::Kill { id } => {
                format!(
                    "session {}: {}",
                    session_id_string(*id),
                    view::printable(&message)
                )
            }
            _ => view::printable(&message),
        }),
        (Command::Sessions { json: true }, AdminReply::Sessions(sessions)) => {
            json(serde_json::to_string_pretty(
                &sessions
                    .iter()
                    .map(view::SessionJson::new)
                    .collect::<Vec<_>>(),
            ))
        }
        (Command::Sessions { json: false }, AdminReply::Sessions(sessions)) => {
            Ok(view::sessions_table(&sessions, now_ms))
        }
        (Command::Show { json: true, .. }, AdminReply::Session(session)) => json(
            serde_json::to_string_pretty(&view::SessionJson::new(&session)),
        ),
        (Command::Show { json: false, .. }, AdminReply::Session(session)) => {
            Ok(view::session_details(&session, now_ms))
        }
        (Command::Detach { id }, AdminReply::Done) => {
            Ok(format!("detached session {}\n", session_id_string(*id)))
        }
        (Command::Kill { id }, AdminReply::Done) => {
            Ok(format!("killed session {}\n", session_id_string(*id)))
        }
        (Command::Connections { json: true }, AdminReply::Appliances(appliances)) => {
            json(serde_json::to_string_pretty(
                &appliances
                    .iter()
                    .map(view::ApplianceJson::new)
                    .collect::<Vec<_>>(),
            ))
        }
        (Command::Connections { json: false }, AdminReply::Appliances(appliances)) => {
            Ok(view::appliances_table(&appliances, now_ms))
        }
        (
            Command::Appliances {
                action: None,
                json: true,
            },
            AdminReply::KnownAppliances(known),
        ) => json(serde_json::to_string_pretty(
            &known
                .iter()
                .map(view::KnownApplianceJson::new)
                .collect::<Vec<_>>(),
        )),
        (
            Command::Appliances {
                action: None,
                json: false,
            },
            AdminReply::KnownAppliances(known),
        ) => Ok(view::known_appliances_table(&known, now_ms)),
        (
            Command::Appliances {
                action: Some(action),
                ..
            },
            AdminReply::KnownAppliance(known),
        ) => {
            let did = match action {
                ApplianceAction::Approve { .. } => "approved",
                ApplianceAction::Revoke { .. } => "revoked",
            };
            Ok(format!(
                "{did} appliance {} ({} connection(s))\n",
                wayray_protocol::identity::short_id(&known.fingerprint),
                known.connections.len()
            ))
        }
        (Command::Server(ServerAction::List { json: true }), AdminReply::PoolServers(servers)) => {
            json(serde_json::to_string_pretty(&servers))
        }
        (Command::Server(ServerAction::List { json: false }), AdminReply::PoolServers(servers)) => {
            Ok(view::pool_servers_table(&servers))
        }
        (Command::Server(ServerAction::Drain { name }), AdminReply::Done) => Ok(format!(
            "draining server {}: no new sessions are placed on it\n",
            view::printable(name)
        )),
        (Command::Server(ServerAction::Undrain { name }), AdminReply::Done) => Ok(format!(
            "server {} takes new sessions again\n",
            view::printable(name)
        )),
        (_, other) => Err(format!(
            "wrsrvd gave an answer that does not fit the request ({}); is it another version?",
            reply_name(&other)
        )),
    }
}

fn reply_name(reply: &AdminReply) -> &'static str {
    match reply {
        AdminReply::Sessions(_) => "a session list",
        AdminReply::Session(_) => "one session",
        AdminReply::Appliances(_) => "an appliance list",
        AdminReply::KnownAppliances(_) => "a list of known appliances",
        AdminReply::KnownAppliance(_) => "one known appliance",
        AdminReply::Done => "done",
        AdminReply::Error(_) => "an error",
        AdminReply::Usage(_) => "a session's usage",
        AdminReply::PoolServers(_) => "a list of pool servers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ids_parse_as_printed_and_garbage_is_refused() {
        assert_eq!(parse_id("00000000000000ab"), Ok(0xab));
        assert_eq!(parse_id("AB"), Ok(0xab));
        assert_eq!(parse_id("ffffffffffffffff"), Ok(u64::MAX));
        for bad in ["", "zz", "+ab", " ab", "0000000000000000ab", "-1"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "-1", "x", "NaN", "inf"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reply_that_does_not_fit_is_an_error() {
        let err = print(&Command::Kill { id: 1 }, AdminReply::Sessions(vec![]), 0).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }
}
