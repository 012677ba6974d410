//! The HTTP admin API and `/metrics` of a real wrsrvd (seccomp enforced), over real HTTP, with
//! a real wrclient showing the shared session: requests without the bearer token are refused,
//! the API answers what `admin.sock` does, the metrics count what the appliance was sent, and
//! `wradm --server` speaks the API.

mod support;

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{BackgroundAppliance, Server, ServerOpts, TempDir};

/// An answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn request(post: bool, url: &str, token: Option<&str>) -> Answer {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = if post {
        let mut req = agent.post(url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        req.send_empty()
    } else {
        let mut req = agent.get(url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        req.call()
    };
    let mut response = response.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("read body");
    Answer { status, body }
}

fn get(url: &str, token: Option<&str>) -> Answer {
    request(false, url, token)
}

fn post(url: &str, token: Option<&str>) -> Answer {
    request(true, url, token)
}

/// The value of the sample line `name` (exactly, labels included) in metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn wradm(args: &[&str]) -> Output {
    Command::new(support::wrsrvd().with_file_name("wradm"))
        .args(args)
        // Neither the developer's environment nor the admin socket may answer for the API.
        .env_remove("WAYRAY_SERVER")
        .env_remove("WAYRAY_API_TOKEN_FILE")
        .env("WAYRAY_ADMIN_SOCKET", "/nonexistent/admin.sock")
        .output()
        .expect("run wradm")
}

fn token_of(dir: &TempDir) -> (String, std::path::PathBuf) {
    let path = dir.path("server-state").join("api-token");
    let token = std::fs::read_to_string(&path).expect("wrsrvd made its API token");
    (token.trim().to_owned(), path)
}

#[test]
fn the_api_and_metrics_answer_only_with_the_token() {
    let dir = TempDir::new("api");
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &["--seccomp", "true"],
            ..Default::default()
        },
    );
    let api = server.api.clone().expect("wrsrvd printed WAYRAY_API=");
    let (token, token_file) = token_of(&dir);
    assert_eq!(token.len(), 64, "{token:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");

    // Without the token, or with a wrong one: 401 and a JSON error, for data and metrics alike.
    for path in [
        "/api/v1/sessions",
        "/api/v1/connections",
        "/api/v1/appliances",
        "/api/v1/pool/servers",
        "/metrics",
        "/no/such/thing",
    ] {
        let answer = get(&format!("{api}{path}"), None);
        assert_eq!(
            answer.status, 401,
            "GET {path} without a token: {}",
            answer.body
        );
        assert!(answer.json()["error"].as_str().is_some(), "{}", answer.body);
        let wrong = get(&format!("{api}{path}"), Some(&"0".repeat(64)));
        assert_eq!(wrong.status, 401, "GET {path} with a wrong token");
    }
    let kill = post(
        &format!("{api}/api/v1/sessions/0000000000000001/kill"),
        None,
    );
    assert_eq!(kill.status, 401);

    // An appliance shows the shared session.
    let appliance = BackgroundAppliance::start(&dir, "appliance", &server, &[]);
    appliance.wait_frames(1, Duration::from_secs(60));
    let t = Some(token.as_str());

    let sessions = get(&format!("{api}/api/v1/sessions"), t);
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    let list = sessions.json();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "shared");
    assert_eq!(list[0]["state"], "active");
    let id = list[0]["id"].as_str().expect("a hex id").to_owned();
    assert_eq!(id.len(), 16, "{id}");

    let one = get(&format!("{api}/api/v1/sessions/{id}"), t);
    assert_eq!(one.status, 200, "{}", one.body);
    let one = one.json();
    assert_eq!(one["id"], id.as_str());
    assert!(one.get("usage").is_some(), "{one}");
    assert_eq!(get(&format!("{api}/api/v1/sessions/zz"), t).status, 400);
    let missing = get(&format!("{api}/api/v1/sessions/00000000000000ff"), t);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no such session");

    let connections = get(&format!("{api}/api/v1/connections"), t).json();
    assert_eq!(
        connections.as_array().map(Vec::len),
        Some(1),
        "{connections}"
    );
    assert_eq!(connections[0]["session"], id.as_str());
    let known = get(&format!("{api}/api/v1/appliances"), t).json();
    assert_eq!(known.as_array().map(Vec::len), Some(1), "{known}");

    // Not in a pool: the pool's resources answer 409 and say why.
    let pool = get(&format!("{api}/api/v1/pool/servers"), t);
    assert_eq!(pool.status, 409, "{}", pool.body);
    assert!(pool.json()["error"]
        .as_str()
        .unwrap()
        .contains("not in a pool"));
    let drain = post(&format!("{api}/api/v1/pool/servers/other/drain"), t);
    assert_eq!(drain.status, 409, "{}", drain.body);

    // The metrics count what the appliance was sent.
    let start = Instant::now();
    let metrics = loop {
        let answer = get(&format!("{api}/metrics"), t);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let text = answer.body;
        let frames = sample(&text, "wayray_frames_sent_total").unwrap_or(0.0);
        let encoded = sample(&text, "wayray_encode_seconds_count").unwrap_or(0.0);
        if frames > 0.0 && encoded > 0.0 {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no frames counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        sample(&metrics, "wayray_frame_bytes_sent_total").unwrap() > 0.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "wayray_card_in_to_frame_seconds_count").unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(sample(&metrics, "wayray_card_in_to_frame_seconds_sum").unwrap() > 0.0);
    assert_eq!(
        sample(&metrics, "wayray_appliances_connected"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "wayray_sessions{kind=\"shared\",state=\"active\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "wayray_sessions{kind=\"user\",state=\"active\"}"),
        Some(0.0)
    );
    // No token or user name ever becomes a label.
    let tokens = connections[0]["token"]
        .as_str()
        .expect("the appliance's pseudo-token");
    assert!(!metrics.contains(tokens), "{metrics}");

    // wradm over the API: the same commands, the same answers.
    let file = token_file.to_str().unwrap();
    let out = wradm(&["--server", &api, "--token-file", file, "sessions"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&id) && stdout.contains("shared"),
        "{stdout}"
    );
    let out = wradm(&[
        "--server",
        &api,
        "--token-file",
        file,
        "show",
        &id,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["id"], id.as_str());
    let out = wradm(&["--server", &api, "--token-file", file, "connections"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let fingerprint = known[0]["fingerprint"].as_str().expect("a fingerprint");
    let out = wradm(&[
        "--server",
        &api,
        "--token-file",
        file,
        "appliances",
        "approve",
        &fingerprint[..16],
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("approved appliance"));
    let known = get(&format!("{api}/api/v1/appliances"), t).json();
    assert_eq!(known[0]["state"], "approved", "{known}");
    let out = wradm(&["--server", &api, "--token-file", file, "server", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this server is not in a pool"), "{stderr}");

    // A wrong token file: wrsrvd refuses it, and wradm says so (exit 2, like no socket).
    let wrong = dir.path("wrong-token");
    std::fs::write(&wrong, "f".repeat(64)).unwrap();
    let out = wradm(&[
        "--server",
        &api,
        "--token-file",
        wrong.to_str().unwrap(),
        "sessions",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the API token"));

    // Detach over the API: the session is suspended, the appliance keeps its connection.
    let detach = post(&format!("{api}/api/v1/sessions/{id}/detach"), t);
    assert_eq!(detach.status, 200, "{}", detach.body);
    assert_eq!(detach.json()["done"], true);
    let out = wradm(&["--server", &api, "--token-file", file, "show", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("suspended"), "{stdout}");

    let appliance_log = appliance.stop();
    let start = Instant::now();
    while sample(
        &get(&format!("{api}/metrics"), t).body,
        "wayray_appliances_connected",
    ) != Some(0.0)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the appliance is still counted:\n{appliance_log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_can_be_turned_off() {
    let dir = TempDir::new("api-off");
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &["--seccomp", "true", "--api-listen", "off"],
            ..Default::default()
        },
    );
    assert_eq!(server.api, None);
    assert!(!Path::new(&dir.path("server-state").join("api-token")).exists());
}
