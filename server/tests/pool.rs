//! A pool of three servers on a real three-member etcd cluster (loopback), each with its own
//! wrsessd, PAM and virtual cards in pcscd's vpcd readers: placement spreads sessions, a card
//! finds its session on another server through a redirect, two appliances presenting one new
//! token at once get one session, one etcd member down changes nothing, a server killed with
//! SIGKILL leaves no binding behind and its appliances reach a greeter elsewhere, and with etcd
//! entirely down new logins still work and are registered when it returns.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    etcd::EtcdCluster,
    launcher::{
        insert_card, insert_card_with, is_root, read, session_logs, start_wrsessd, wait_for,
        wradm_sessions, Killed, User, PORT_A, PORT_B, READER_A, READER_B,
    },
    read_frame_log, wrclient, Server, ServerOpts, TempDir,
};

const NAMES: [&str; 3] = ["pa", "pb", "pc"];
/// The pool's lease time-to-live in these tests: a killed server leaves the pool this long
/// after its last keep-alive.
const TTL_SECS: u64 = 3;

struct PoolServer {
    name: &'static str,
    dir: TempDir,
    run: PathBuf,
    server: Option<Server>,
    _sessd: Killed,
}

impl PoolServer {
    fn start(name: &'static str, cluster: &EtcdCluster) -> Self {
        let dir = TempDir::new(&format!("pool-{name}"));
        let run = dir.path("wayray-run");
        let config = dir.path("wrsrvd.toml");
        // Tokens named with `--token` prove nothing: accepted, with the lock screen on re-attach.
        std::fs::write(
            &config,
            format!("unproven_cards = \"lock\"\n[pool]\nlease_ttl_secs = {TTL_SECS}\n"),
        )
        .unwrap();
        let server = Server::start(
            &dir,
            ServerOpts {
                launcher: true,
                extra: &[
                    "-c",
                    config.to_str().unwrap(),
                    "--run-dir",
                    run.to_str().unwrap(),
                    "--pool",
                    &cluster.endpoint_list(),
                    "--pool-name",
                    name,
                ],
                ..Default::default()
            },
        );
        let sessd = start_wrsessd(&run, &dir.path("wrsessd.log"));
        Self {
            name,
            dir,
            run,
            server: Some(server),
            _sessd: sessd,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server is running")
    }

    fn log(&self) -> String {
        self.server.as_ref().map(|s| s.log()).unwrap_or_default()
    }

    fn sessions(&self) -> Vec<serde_json::Value> {
        if self.server.is_none() {
            return Vec::new();
        }
        wradm_sessions(&self.run)
    }

    /// Kills wrsrvd with SIGKILL (no goodbye, no lease revoked).
    fn kill(&mut self) {
        if let Some(server) = &self.server {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc_kill(server.child.id() as i32, 9) };
        }
        std::thread::sleep(Duration::from_millis(200));
        self.server = None;
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A wrclient at `server`; with `reader` it follows that vpcd reader and requires a card,
/// with `token` it presents that fixed token, else its own pseudo-token.
fn appliance(
    dir: &TempDir,
    name: &str,
    server: std::net::SocketAddr,
    reader: Option<&str>,
    token: Option<&str>,
    script: &Path,
) -> Killed {
    let mut cmd = Command::new(wrclient());
    cmd.arg("--server")
        .arg(server.to_string())
        .arg("--state-dir")
        .arg(dir.path(&format!("{name}-state")))
        .arg("--frame-log")
        .arg(dir.path(&format!("{name}-frames.log")))
        .args(["--screen", "800x600", "--input-script"])
        .arg(script);
    if let Some(reader) = reader {
        cmd.args(["--card-reader", reader, "--require-card"]);
    }
    if let Some(token) = token {
        cmd.args(["--token", token]);
    }
    let child = cmd
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path(&format!("{name}.log"))).unwrap())
        .spawn()
        .expect("start wrclient");
    Killed(child)
}

/// Sessions of every running server whose tokens include `token`, as (server, session).
fn sessions_of(pool: &[PoolServer], token: &str) -> Vec<(&'static str, serde_json::Value)> {
    pool.iter()
        .flat_map(|p| p.sessions().into_iter().map(move |s| (p.name, s)))
        .filter(|(_, s)| {
            s["tokens"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == token))
        })
        .collect()
}

#[test]
fn pcsc_pool_of_three_servers_on_etcd() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let dir = TempDir::new("pool");
    let mut cluster = EtcdCluster::start(&dir, 3);
    let user = User::create(&format!("wrpl{}", std::process::id() % 100000), "p00l-pw");
    user.session_toml("desktop = \"none\"\nautostart = [\"foot\"]\n");
    let mut pool: Vec<PoolServer> = NAMES
        .iter()
        .map(|n| PoolServer::start(n, &cluster))
        .collect();
    let logs = |pool: &[PoolServer], dir: &TempDir| {
        let mut text = String::new();
        for p in pool {
            text += &format!(
                "--- {} wrsrvd\n{}\n--- {} wrsessd\n{}\n--- {} sessions\n{}\n",
                p.name,
                p.log(),
                p.name,
                read(&p.dir.path("wrsessd.log")),
                p.name,
                session_logs(&p.run)
            );
        }
        for name in ["one", "two", "race1", "race2", "late"] {
            text += &format!(
                "--- appliance {name}\n{}\n",
                read(&dir.path(&format!("{name}.log")))
            );
        }
        text
    };
    let idle = dir.path("idle.script");
    std::fs::write(&idle, "wait 600000\n").unwrap();

    // Every server registers and sees the other two.
    wait_for(
        "three servers in the pool",
        Duration::from_secs(20),
        || cluster.get_prefix("/wayray/v1/servers/").len() == 3,
        || logs(&pool, &dir),
    );

    // --- placement: eight appliances without cards at server pa spread over the pool -------
    let mut spread = Vec::new();
    for i in 0..8 {
        spread.push(appliance(
            &dir,
            &format!("spread{i}"),
            pool[0].server().listen,
            None,
            None,
            &idle,
        ));
    }
    wait_for(
        "eight greeters in the pool",
        Duration::from_secs(60),
        || {
            pool.iter()
                .map(|p| {
                    p.sessions()
                        .iter()
                        .filter(|s| s["kind"] == "greeter")
                        .count()
                })
                .sum::<usize>()
                == 8
        },
        || logs(&pool, &dir),
    );
    let per_server: Vec<usize> = pool
        .iter()
        .map(|p| {
            p.sessions()
                .iter()
                .filter(|s| s["kind"] == "greeter")
                .count()
        })
        .collect();
    eprintln!("placement of 8 new tokens over the pool: {per_server:?}");
    assert!(
        per_server.iter().filter(|n| **n > 0).count() >= 2,
        "all eight sessions were placed on one server: {per_server:?}"
    );
    assert!(
        pool[0].log().contains("redirecting the appliance"),
        "pa redirected no appliance"
    );
    drop(spread);

    // --- the pool through pa's REST API: servers listed, pc drained, no placement on pc ---
    let api = pool[0]
        .server()
        .api
        .clone()
        .expect("pa serves its admin API");
    let token_file = pool[0].server().state.join("api-token");
    let wradm = |args: &[&str]| {
        let out = Command::new(support::wrsrvd().with_file_name("wradm"))
            .args(["--server", &api, "--token-file"])
            .arg(&token_file)
            .args(args)
            .env("WAYRAY_ADMIN_SOCKET", "/nonexistent/admin.sock")
            .output()
            .expect("run wradm");
        assert!(out.status.success(), "wradm {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let servers: serde_json::Value =
        serde_json::from_str(&wradm(&["server", "list", "--json"])).expect("JSON");
    let listed: Vec<&str> = servers
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(listed, NAMES, "{servers}");
    // Without the token the API refuses, metrics included.
    for path in ["/api/v1/pool/servers", "/metrics"] {
        let status = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .get(format!("{api}{path}"))
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 401, "{path} without credentials");
    }
    assert!(
        pool[0]
            .server()
            .metrics()
            .contains("wayray_frames_sent_total"),
        "pa's metrics"
    );
    wradm(&["server", "drain", "pc"]);
    wait_for(
        "pc to show as draining",
        Duration::from_secs(10),
        || {
            serde_json::from_str::<serde_json::Value>(&wradm(&["server", "list", "--json"]))
                .ok()
                .and_then(|v| {
                    v.as_array()?
                        .iter()
                        .find(|s| s["name"] == "pc")
                        .map(|s| s["draining"] == true)
                })
                .unwrap_or(false)
        },
        || logs(&pool, &dir),
    );
    let pc_before = pool[2].log().matches("starting a greeter").count();
    let mut drained = Vec::new();
    for i in 0..4 {
        drained.push(appliance(
            &dir,
            &format!("drained{i}"),
            pool[0].server().listen,
            None,
            None,
            &idle,
        ));
    }
    wait_for(
        "four more greeters",
        Duration::from_secs(60),
        || {
            pool.iter()
                .map(|p| p.log().matches("starting a greeter").count())
                .sum::<usize>()
                >= 12
        },
        || logs(&pool, &dir),
    );
    assert_eq!(
        pool[2].log().matches("starting a greeter").count(),
        pc_before,
        "a session was placed on the drained server"
    );
    wradm(&["server", "undrain", "pc"]);
    drop(drained);

    // --- a card logs in wherever the pool places it ------------------------------------------
    let script_one = dir.path("one.script");
    std::fs::write(
        &script_one,
        format!(
            "wait-frame\nwait 2500\ntype {u}\nkey tab\ntype p00l-pw\nkey enter\nwait 7000\n\
             type echo POOL-MARKER\nkey enter\nwait 600000\n",
            u = user.0
        ),
    )
    .unwrap();
    let card = insert_card(&dir, PORT_A, "0A0B0C0D");
    let one = appliance(
        &dir,
        "one",
        pool[0].server().listen,
        Some(READER_A),
        None,
        &script_one,
    );
    let holder = || {
        pool.iter()
            .position(|p| p.sessions().iter().any(|s| s["kind"] == "user"))
    };
    wait_for(
        "the user's session somewhere in the pool",
        Duration::from_secs(60),
        || holder().is_some(),
        || logs(&pool, &dir),
    );
    let s = holder().unwrap();
    eprintln!("the user's session runs on {}", pool[s].name);
    wait_for(
        "foot in the user's session",
        Duration::from_secs(30),
        || session_logs(&pool[s].run).contains("mapping toplevel"),
        || logs(&pool, &dir),
    );

    // One etcd member goes down for the rest of the test (all but the outage below).
    cluster.kill_member(2);

    std::thread::sleep(Duration::from_secs(10));
    let before = read_frame_log(&dir.path("one-frames.log"))
        .last()
        .expect("one showed frames")
        .clone();
    drop(card);
    wait_for(
        "the session to be detached from one",
        Duration::from_secs(15),
        || pool[s].log().contains("token removed"),
        || logs(&pool, &dir),
    );

    // --- card in at an appliance of another server: the same session, through a redirect ---
    let other = (s + 1) % 3;
    let two = appliance(
        &dir,
        "two",
        pool[other].server().listen,
        Some(READER_B),
        None,
        &idle,
    );
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let _card_b = insert_card(&dir, PORT_B, "0A0B0C0D");
    wait_for(
        "two to show the session from the other server",
        Duration::from_secs(30),
        || {
            read_frame_log(&dir.path("two-frames.log"))
                .iter()
                .any(|f| f.digest == before.digest)
        },
        || logs(&pool, &dir),
    );
    eprintln!(
        "card in at {}'s appliance → the session from {}: {:?}",
        pool[other].name,
        pool[s].name,
        started.elapsed()
    );
    assert!(
        pool[other].log().contains("redirecting the appliance"),
        "{} did not redirect",
        pool[other].name
    );
    assert_eq!(
        pool.iter()
            .map(|p| p.log().matches("starting the user's session").count())
            .sum::<usize>(),
        1,
        "more than one user session was started"
    );

    // --- two appliances of two servers present one new token at the same instant -----------
    let (x, y) = ((s + 1) % 3, (s + 2) % 3);
    let race1 = appliance(
        &dir,
        "race1",
        pool[x].server().listen,
        None,
        Some("race.0001"),
        &idle,
    );
    let race2 = appliance(
        &dir,
        "race2",
        pool[y].server().listen,
        None,
        Some("race.0001"),
        &idle,
    );
    wait_for(
        "a greeter for the raced token",
        Duration::from_secs(40),
        || !sessions_of(&pool, "race.0001").is_empty(),
        || logs(&pool, &dir),
    );
    std::thread::sleep(Duration::from_secs(5));
    let raced = sessions_of(&pool, "race.0001");
    assert_eq!(
        raced.len(),
        1,
        "one token, {} sessions: {raced:?}\n{}",
        raced.len(),
        logs(&pool, &dir)
    );
    let bindings = cluster.get_prefix("/wayray/v1/bindings/race.0001");
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert!(
        bindings[0]
            .1
            .contains(&format!("\"server\":\"{}\"", raced[0].0)),
        "the binding {bindings:?} names another server than the session's ({})",
        raced[0].0
    );
    drop((race1, race2));

    // --- the server holding the user's session dies --------------------------------------
    let dead = pool[s].name;
    let killed_at = Instant::now();
    pool[s].kill();
    wait_for(
        "two to reach a greeter on a surviving server",
        Duration::from_secs(40),
        || {
            pool.iter().any(|p| {
                p.sessions().iter().any(|s| {
                    s["kind"] == "greeter"
                        && s["tokens"].as_array().is_some_and(|t| {
                            t.iter()
                                .any(|t| t.as_str().is_some_and(|t| t.ends_with(".0a0b0c0d")))
                        })
                })
            })
        },
        || logs(&pool, &dir),
    );
    eprintln!(
        "{dead} killed → its appliance at a greeter elsewhere: {:?} (lease TTL {TTL_SECS} s)",
        killed_at.elapsed()
    );
    wait_for(
        "the greeter to say the session was lost with its server",
        Duration::from_secs(20),
        || {
            pool.iter()
                .any(|p| session_logs(&p.run).contains("showing the launcher's notice"))
        },
        || logs(&pool, &dir),
    );
    wait_for(
        "the pool to forget the dead server and its bindings",
        Duration::from_secs(20),
        || {
            cluster.get_prefix("/wayray/v1/").iter().all(|(k, v)| {
                !k.ends_with(&format!("/servers/{dead}"))
                    && !v.contains(&format!("\"server\":\"{dead}\""))
            })
        },
        || format!("{:?}", cluster.get_prefix("/wayray/v1/")),
    );
    drop(one);

    // --- etcd entirely down: a new token still gets a greeter, registered when etcd is back --
    let survivor = (s + 1) % 3;
    cluster.kill_member(0);
    cluster.kill_member(1);
    wait_for(
        "the survivors to notice etcd is gone",
        Duration::from_secs(20),
        || pool[survivor].log().contains("lost the pool's etcd"),
        || logs(&pool, &dir),
    );
    let ids = |p: &PoolServer| -> Vec<String> {
        p.sessions().iter().map(|s| s["id"].to_string()).collect()
    };
    let sessions_before = ids(&pool[survivor]);
    let late = appliance(
        &dir,
        "late",
        pool[survivor].server().listen,
        None,
        Some("late.0001"),
        &idle,
    );
    wait_for(
        "a greeter for a new token while etcd is down",
        Duration::from_secs(40),
        || {
            pool[survivor].sessions().iter().any(|s| {
                s["tokens"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "late.0001"))
            })
        },
        || logs(&pool, &dir),
    );
    // Every session it had goes on.
    let sessions_during = ids(&pool[survivor]);
    assert!(
        sessions_before
            .iter()
            .all(|id| sessions_during.contains(id)),
        "sessions ended while etcd was down: {sessions_before:?} → {sessions_during:?}"
    );
    cluster.start_member(0);
    cluster.start_member(1);
    cluster.wait_healthy(Duration::from_secs(30));
    wait_for(
        "the token bound while etcd was down to be registered",
        Duration::from_secs(30),
        || {
            cluster
                .get_prefix("/wayray/v1/bindings/late.0001")
                .iter()
                .any(|(_, v)| v.contains(&format!("\"server\":\"{}\"", pool[survivor].name)))
        },
        || logs(&pool, &dir),
    );
    drop((late, two));

    // --- the card's key holds pool-wide: a copy of its token with another key is refused by
    // a server that never saw the card's login ----------------------------------------------
    assert!(
        cluster
            .get_prefix("/wayray/v1/cards/")
            .iter()
            .any(|(k, _)| k.ends_with(".0a0b0c0d")),
        "the card's key is not in the pool"
    );
    let other_key = dir.path("impostor.key");
    let _impostor = insert_card_with(PORT_A, "0A0B0C0D", Some(&other_key));
    let _imp = appliance(
        &dir,
        "imp",
        pool[survivor].server().listen,
        Some(READER_A),
        None,
        &idle,
    );
    wait_for(
        "the impostor card to be refused",
        Duration::from_secs(30),
        || {
            pool[survivor]
                .log()
                .lines()
                .any(|l| l.contains("card refused") && l.contains("is not the key"))
        },
        || logs(&pool, &dir),
    );
}

/// An appliance approved at one server of the pool is admitted by every other (under
/// `appliance_auth = "required"`, where an unknown one fails the TLS handshake), and revoked
/// at one, it is refused by all.
#[test]
fn an_appliance_decision_at_one_server_holds_in_the_whole_pool() {
    let dir = TempDir::new("pool-approval");
    let cluster = EtcdCluster::start(&dir, 1);
    let start = |name: &str| {
        let server_dir = TempDir::new(&format!("pool-approval-{name}"));
        let server = Server::start(
            &server_dir,
            ServerOpts {
                launcher: true,
                appliance_auth: Some("required"),
                extra: &["--pool", &cluster.endpoint_list(), "--pool-name", name],
                ..Default::default()
            },
        );
        server.wait_log("in the pool", 1, Duration::from_secs(20));
        (server_dir, server)
    };
    let (_da, pa) = start("pa");
    let (_db, pb) = start("pb");
    let idle = dir.path("idle.script");
    std::fs::write(&idle, "wait 600000\n").unwrap();

    // Unknown at pa: refused in the handshake, listed there as pending.
    let first = appliance(&dir, "x", pa.listen, None, None, &idle);
    let pending = wait_for_known(&pa, "pending");
    drop(first);
    let fingerprint = pending["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let id = &fingerprint[..16];
    pa.wradm(&["appliances", "approve", id]);
    wait_for(
        "the approval to reach the pool",
        Duration::from_secs(10),
        || {
            cluster
                .get_prefix(&format!("/wayray/v1/appliances/{fingerprint}"))
                .iter()
                .any(|(_, v)| v == "approved")
        },
        || pa.log(),
    );

    // The same appliance (same state directory, same key) at pb, which never saw it: admitted.
    let second = appliance(&dir, "x", pb.listen, None, None, &idle);
    wait_for(
        "pb to admit the appliance approved at pa",
        Duration::from_secs(20),
        || pb.log().contains("handshake confirmed"),
        || format!("{}\n--- appliance\n{}", pb.log(), read(&dir.path("x.log"))),
    );
    drop(second);

    // Revoked at pb: pa, whose own store says approved, refuses it now.
    wait_for_known(&pb, "pending");
    pb.wradm(&["appliances", "revoke", id]);
    wait_for(
        "the revocation to reach the pool",
        Duration::from_secs(10),
        || {
            cluster
                .get_prefix(&format!("/wayray/v1/appliances/{fingerprint}"))
                .iter()
                .any(|(_, v)| v == "revoked")
        },
        || pb.log(),
    );
    let _third = appliance(&dir, "x", pa.listen, None, None, &idle);
    wait_for(
        "pa to refuse the appliance revoked at pb",
        Duration::from_secs(20),
        || pa.log().contains("refusing a revoked appliance"),
        || pa.log(),
    );
}

/// The appliance `wradm appliances --json` lists at `server` in `state`.
fn wait_for_known(server: &Server, state: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&server.wradm(&["appliances", "--json"])).unwrap_or_default();
        if let Some(a) = list.into_iter().find(|a| a["state"] == state) {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {state} appliance at the server\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
