//! The real `wrclient` among a pool of two in-process servers with different certificates (see
//! `support`): redirects followed to exactly the announced key, refused with any other key or
//! after too many hops, and a server that dies replaced by another of the pool.
//!
//! The appliance is started with `--server-cert` set to server 1's certificate, so server 2's
//! certificate can only be accepted by its announced fingerprint (never by trust on first use).

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use wayray_protocol::{Arrival, ByeReason, ClientControl, RedirectReason};

const W: u32 = 320;
const H: u32 = 200;

/// `wrclient` configured with server 1 (pinned to its certificate), plus `extra` flags.
fn pool_client(dir: &Path, s1: &TestServer, extra: &[&str]) -> Running {
    let cert = dir.join("s1.der");
    s1.write_cert(&cert);
    let mut args = vec!["--server-cert", cert.to_str().unwrap()];
    args.extend_from_slice(extra);
    Running::spawn(wrclient(dir, s1.addr, &args))
}

/// Shows one frame and checks that it is acknowledged.
async fn show_a_frame(appliance: &mut Appliance, seq: u64) {
    appliance.open_display().await;
    appliance
        .send_frame(key_frame(seq, W, H, &test_pattern(W, H)))
        .await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_is_followed_to_the_server_with_the_announced_key() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (TestServer::start(), TestServer::start());
    let pool = vec![s1.pool_entry("s1"), s2.pool_entry("s2")];
    let client = pool_client(dir.path(), &s1, &["--exit-after-frames", "1"]);

    let mut first = s1.accept().await;
    let hello = first.expect_hello().await;
    assert_eq!(hello.arrival, Arrival::Direct);
    assert!(hello.token.is_some(), "{hello:?}");
    first.welcome_as("s1", W, H, pool.clone()).await;
    // The appliance leaves without a goodbye: the server closes a redirected connection.
    let said = first
        .redirect(s2.pool_entry("s2"), RedirectReason::SessionThere)
        .await;
    assert!(
        !matches!(said, Some(ClientControl::Bye(_))),
        "said {said:?}"
    );

    let mut second = s2.accept().await;
    let redirected = second.expect_hello().await;
    assert_eq!(
        redirected.arrival,
        Arrival::Redirected {
            from: "s1".into(),
            hops: 1
        }
    );
    // The same card (here the pseudo-token) is presented to the new server.
    assert_eq!(redirected.token, hello.token);
    second.welcome_as("s2", W, H, pool).await;
    show_a_frame(&mut second, 1).await;
    assert_eq!(
        second.next_control().await,
        Some(ClientControl::Bye(ByeReason::Shutdown))
    );
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("redirected: the session runs there; connecting to s2"),
        "the status does not say where and why:\n{stderr}"
    );
    // Trusted by fingerprint only: nothing was written for server 2 in known_servers.
    assert!(!known_server_file(dir.path(), s2.addr).exists());
    // The pool list is kept for the next boot.
    let kept = std::fs::read_to_string(dir.path().join("state/pool.toml")).unwrap();
    assert!(kept.contains(&s2.fingerprint), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_a_server_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (TestServer::start(), TestServer::start());
    let handshakes = s2.accept_in_background();
    let client = pool_client(dir.path(), &s1, &[]);

    let mut first = s1.accept().await;
    first.expect_hello().await;
    first
        .welcome_as("s1", W, H, vec![s1.pool_entry("s1"), s2.pool_entry("s2")])
        .await;
    let mut impostor = s2.pool_entry("s2");
    impostor.fingerprint = spki_fingerprint(&self_signed().signing_key);
    first.redirect(impostor, RedirectReason::Placed).await;

    // Refused, so the appliance comes back to the server it had, as a plain reconnect.
    let mut again = s1.accept().await;
    assert_eq!(again.expect_hello().await.arrival, Arrival::Direct);
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "a handshake with the wrong key completed"
    );
    client.signal("TERM");
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pool server s2 ({})", s2.addr))
            && stderr.contains("not the")
            && stderr.contains("not connecting there"),
        "no clear error:\n{stderr}"
    );
    assert!(!known_server_file(dir.path(), s2.addr).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_is_replaced_by_another_of_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (TestServer::start(), TestServer::start());
    let pool = vec![s1.pool_entry("s1"), s2.pool_entry("s2")];
    let client = pool_client(dir.path(), &s1, &["--exit-after-frames", "2"]);

    let mut first = s1.accept().await;
    assert_eq!(first.expect_hello().await.arrival, Arrival::Direct);
    first.welcome_as("s1", W, H, pool.clone()).await;
    show_a_frame(&mut first, 1).await;
    // Killed: no goodbye, no close; the appliance notices by its idle timeout (10 s), retries
    // s1 once (2 s), then goes to s2.
    s1.vanish();

    let mut second = s2.accept_within(Duration::from_secs(40)).await;
    assert_eq!(
        second.expect_hello().await.arrival,
        Arrival::ServerLost {
            server: "s1".into(),
            showed_session: true
        }
    );
    second.welcome_as("s2", W, H, pool).await;
    second
        .send_control(&wayray_protocol::ServerControl::Notice(
            wayray_protocol::Notice::SessionServerFailed {
                server: "s1".into(),
            },
        ))
        .await;
    show_a_frame(&mut second, 1).await;
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    // The notice reaches the status line.
    assert!(
        stderr.contains("status=\"Your session was on a server that failed (s1)"),
        "{stderr}"
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_in_a_row_stop_at_the_hop_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (TestServer::start(), TestServer::start());
    let pool = vec![s1.pool_entry("s1"), s2.pool_entry("s2")];
    let client = pool_client(dir.path(), &s1, &[]);

    let mut appliance = s1.accept().await;
    assert_eq!(appliance.expect_hello().await.arrival, Arrival::Direct);
    // s1 → s2 → s1 → s2, each thinking the session is on the other.
    for hops in 1..=3u8 {
        let (from, to, to_server) = if hops % 2 == 1 {
            ("s1", "s2", &s2)
        } else {
            ("s2", "s1", &s1)
        };
        appliance.welcome_as(from, W, H, pool.clone()).await;
        appliance
            .redirect(to_server.pool_entry(to), RedirectReason::SessionThere)
            .await;
        appliance = to_server.accept().await;
        assert_eq!(
            appliance.expect_hello().await.arrival,
            Arrival::Redirected {
                from: from.into(),
                hops
            }
        );
    }
    // The fourth is not followed: back to the configured server, after the backoff.
    appliance.welcome_as("s2", W, H, pool.clone()).await;
    appliance
        .redirect(s1.pool_entry("s1"), RedirectReason::SessionThere)
        .await;
    let mut back = s1.accept().await;
    assert_eq!(back.expect_hello().await.arrival, Arrival::Direct);

    client.signal("TERM");
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("4 redirects in a row without a session shown"),
        "{stderr}"
    );
}

/// An orderly restart (`Bye(Shutdown)`) is waited for with the usual backoff; a server that then
/// stays away for 3 attempts is replaced by another of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_come_back_after_a_restart_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (TestServer::start(), TestServer::start());
    let pool = vec![s1.pool_entry("s1"), s2.pool_entry("s2")];
    let client = pool_client(dir.path(), &s1, &["--exit-after-frames", "1"]);

    let mut first = s1.accept().await;
    first.expect_hello().await;
    first.welcome_as("s1", W, H, pool.clone()).await;
    first
        .send_control(&wayray_protocol::ServerControl::Bye(ByeReason::Shutdown))
        .await;
    // The appliance has the goodbye when it leaves; then the server is gone for good.
    tokio::time::timeout(STEP_TIMEOUT, first.conn.closed())
        .await
        .expect("the appliance did not leave after the goodbye");
    s1.vanish();

    // 3 attempts of 5 s each at s1, with the backoff between them, then s2.
    let mut second = s2.accept_within(Duration::from_secs(60)).await;
    assert_eq!(
        second.expect_hello().await.arrival,
        Arrival::ServerLost {
            server: "s1".into(),
            showed_session: false
        }
    );
    second.welcome_as("s2", W, H, pool).await;
    show_a_frame(&mut second, 1).await;
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("cannot connect error=no answer from the server within 5 s")
            .count(),
        3,
        "{stderr}"
    );
    drop(first);
}

/// The pool list outlives the process: a rebooted appliance whose configured server is down
/// reaches the pool's other server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooted_appliance_reaches_the_pool_from_the_kept_list() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (TestServer::start(), TestServer::start());
    let pool = vec![s1.pool_entry("s1"), s2.pool_entry("s2")];

    // First boot: s1 lists the pool.
    let client = pool_client(dir.path(), &s1, &["--exit-after-frames", "1"]);
    let mut first = s1.accept().await;
    first.expect_hello().await;
    first.welcome_as("s1", W, H, pool.clone()).await;
    show_a_frame(&mut first, 1).await;
    let out = client.wait().await;
    assert!(out.status.success(), "{}", stderr(&out));

    // s1 is gone; the appliance boots again.
    s1.vanish();
    let client = pool_client(dir.path(), &s1, &["--exit-after-frames", "1"]);
    let mut second = s2.accept_within(Duration::from_secs(60)).await;
    // Nothing was lost in this run: a plain arrival, pinned by the kept fingerprint.
    assert_eq!(second.expect_hello().await.arrival, Arrival::Direct);
    second.welcome_as("s2", W, H, pool).await;
    show_a_frame(&mut second, 1).await;
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("a pool list is kept from before"),
        "{stderr}"
    );
    assert!(!known_server_file(dir.path(), s2.addr).exists());
}
