//! End-to-end tests of the greeter: the real `wrlogin` as the only client of a real `wrsrvd`,
//! typed into by a real `wrclient` (scripted input) over QUIC, sending its logins to a login
//! socket that the test serves in place of the session launcher.

mod support;

use std::{
    io::{Read, Write},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use support::*;
use wayray_protocol::{
    framing,
    sessions::{LoginReply, LoginRequest},
    FrameReader,
};

/// The greeter's background colour (`render::BACKGROUND` in wrlogin), as RGB.
const BACKGROUND: [u8; 3] = [0x1d, 0x23, 0x30];
/// Where the login panel is on a 1280×800 screen (480×410, centred).
const PANEL: (u32, u32, u32, u32) = (400, 195, 480, 410);

fn wrlogin() -> &'static str {
    env!("CARGO_BIN_EXE_wrlogin")
}

/// Stands in for `wrsessd`'s `login.sock`: answers each connection with the next reply, after
/// a delay (PAM is slow on a wrong password), and hands the requests to the test.
struct LoginService {
    path: PathBuf,
    requests: mpsc::Receiver<LoginRequest>,
}

impl LoginService {
    fn start(dir: &TempDir, replies: Vec<(Duration, LoginReply)>) -> LoginService {
        let path = dir.path("login.sock");
        let listener = UnixListener::bind(&path).expect("bind the test login socket");
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for (delay, reply) in replies {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = FrameReader::new(1 << 16);
                let mut buf = [0u8; 1024];
                let request = loop {
                    match reader.next::<LoginRequest>() {
                        Ok(Some(request)) => break request,
                        Ok(None) => {}
                        Err(err) => panic!("bad login request: {err}"),
                    }
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => reader.push(&buf[..n]),
                    }
                };
                if tx.send(request).is_err() {
                    return;
                }
                std::thread::sleep(delay);
                let _ = stream.write_all(&framing::encode(&reply).unwrap());
            }
        });
        LoginService { path, requests }
    }

    fn next(&self, timeout: Duration) -> LoginRequest {
        self.requests
            .recv_timeout(timeout)
            .expect("the greeter sent no login request")
    }
}

/// A server whose only client is the greeter, pointed at `socket` with `ticket`.
fn start_greeter(dir: &TempDir, socket: &Path, ticket: &str) -> Server {
    let cmd = format!(
        "WAYRAY_LOGIN_SOCKET='{}' WAYRAY_LOGIN_TICKET='{ticket}' exec '{}'",
        socket.display(),
        wrlogin()
    );
    let server = Server::start(
        dir,
        ServerOpts {
            spawn: &[&cmd],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    server
}

/// Runs wrclient with `script` as its input until the script's `exit`, writing a screenshot.
fn run_script(dir: &TempDir, server: &Server, script: &str, screenshot: &Path) {
    let path = dir.path("input.script");
    std::fs::write(&path, script).unwrap();
    let out = run_appliance(
        dir,
        server.listen,
        &[
            "--input-script",
            path.to_str().unwrap(),
            "--screenshot",
            screenshot.to_str().unwrap(),
            "--exit-after",
            "30",
        ],
    );
    assert!(
        out.status.success(),
        "wrclient failed:\n{}",
        strip_ansi(&String::from_utf8_lossy(&out.stderr))
    );
}

fn login(ticket: &str, username: &str, password: &str) -> LoginRequest {
    LoginRequest::Login {
        ticket: ticket.into(),
        username: username.into(),
        password: password.into(),
    }
}

/// Counts pixels in `area` of an RGB image that satisfy `pred`.
fn count(
    (width, _, rgb): &(u32, u32, Vec<u8>),
    (x, y, w, h): (u32, u32, u32, u32),
    pred: fn(&[u8]) -> bool,
) -> usize {
    let mut n = 0;
    for row in y..y + h {
        for col in x..x + w {
            let i = ((row * width + col) * 3) as usize;
            n += pred(&rgb[i..i + 3]) as usize;
        }
    }
    n
}

fn light(p: &[u8]) -> bool {
    p.iter().all(|&c| c > 0xc0)
}

fn red(p: &[u8]) -> bool {
    p[0] > 0xc0 && p[1] < 0x90 && p[2] < 0x90
}

fn greeter_exited(server: &Server) -> Option<String> {
    server
        .log()
        .lines()
        .find(|l| l.contains("client exited"))
        .map(str::to_string)
}

#[test]
fn the_greeter_fills_the_output_with_the_login_form() {
    let dir = TempDir::new("wrlogin-draw");
    let service = LoginService::start(&dir, Vec::new());
    let server = start_greeter(&dir, &service.path, "ticket-draw");
    let log = server.log();
    let mapped = log
        .lines()
        .find(|l| l.contains("mapping toplevel"))
        .unwrap_or_default();
    assert!(
        mapped.contains("x=0 y=0 w=1280 h=800"),
        "the greeter does not cover the 1280×800 output: {mapped}"
    );

    let shot = dir.path("greeter.png");
    let out = run_appliance(
        &dir,
        server.listen,
        &["--exit-after", "3", "--screenshot", shot.to_str().unwrap()],
    );
    assert!(out.status.success(), "wrclient failed");
    let image = read_png_rgb(&shot);
    assert_eq!((image.0, image.1), (1280, 800));
    assert_eq!(&image.2[..3], &BACKGROUND, "top-left is not the background");
    let not_background = count(&image, (0, 0, 1280, 800), |p| p != BACKGROUND);
    assert!(
        not_background > 50_000,
        "only {not_background} pixels differ from the plain background"
    );
    let text = count(&image, PANEL, light);
    assert!(
        text > 500,
        "only {text} light (text) pixels in the form area"
    );
    assert_eq!(count(&image, PANEL, red), 0, "an error is shown at start");
    assert!(greeter_exited(&server).is_none(), "the greeter exited");
}

#[test]
fn a_refused_login_keeps_the_greeter_and_an_accepted_one_ends_it() {
    let dir = TempDir::new("wrlogin-login");
    let service = LoginService::start(
        &dir,
        vec![
            (
                Duration::from_millis(500),
                LoginReply::Refused {
                    message: "Wrong user name or password".into(),
                },
            ),
            (Duration::ZERO, LoginReply::Accepted),
        ],
    );
    let server = start_greeter(&dir, &service.path, "ticket-42");

    // Return in the user field moves to the password; Return there submits. The second Return
    // comes while the first login is being checked and must not send another one.
    let shot = dir.path("refused.png");
    run_script(
        &dir,
        &server,
        "wait 500\ntype alice\nkey enter\ntype wrong pass\nkey enter\nkey enter\nwait 1500\nexit\n",
        &shot,
    );
    assert_eq!(
        service.next(Duration::from_secs(10)),
        login("ticket-42", "alice", "wrong pass")
    );
    server.wait_log("login refused", 1, Duration::from_secs(10));
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("login refused") && l.contains("user=alice")),
        "no refusal with the user name in the log:\n{log}"
    );
    assert!(!log.contains("wrong pass"), "the password was logged");
    assert!(
        service.requests.try_recv().is_err(),
        "a submit while checking sent a second login"
    );
    assert!(
        greeter_exited(&server).is_none(),
        "the greeter exited after a refusal"
    );
    let image = read_png_rgb(&shot);
    let error = count(&image, PANEL, red);
    assert!(error > 50, "no red error line ({error} red pixels)");

    // The user name is kept and the focus is on the (cleared) password field: typing the
    // password and Return is a complete second attempt.
    run_script(
        &dir,
        &server,
        "wait 500\ntype right-pass\nkey enter\nwait 500\nexit\n",
        &dir.path("accepted.png"),
    );
    assert_eq!(
        service.next(Duration::from_secs(10)),
        login("ticket-42", "alice", "right-pass")
    );
    server.wait_log("login accepted", 1, Duration::from_secs(10));
    server.wait_log("client exited", 1, Duration::from_secs(10));
    let exited = greeter_exited(&server).unwrap_or_default();
    assert!(
        exited.contains("exit status: 0"),
        "the greeter did not exit 0 after acceptance: {exited}"
    );
    assert!(
        !server.log().contains("right-pass"),
        "the password was logged"
    );
}

#[test]
fn an_unreachable_login_service_is_shown_and_the_greeter_keeps_running() {
    let dir = TempDir::new("wrlogin-nolink");
    let server = start_greeter(&dir, &dir.path("nobody-listens.sock"), "ticket-x");
    let shot = dir.path("unavailable.png");
    run_script(
        &dir,
        &server,
        "wait 500\ntype bob\nkey tab\ntype pw\nkey enter\nwait 800\nexit\n",
        &shot,
    );
    server.wait_log("login service unavailable", 1, Duration::from_secs(10));
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("login service unavailable") && l.contains("nobody-listens.sock")),
        "the error does not name the socket:\n{log}"
    );
    assert!(greeter_exited(&server).is_none(), "the greeter exited");
    let image = read_png_rgb(&shot);
    assert!(count(&image, PANEL, red) > 50, "no red error line");
}
