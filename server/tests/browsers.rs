//! Real browsers in a session, driven from the appliance: `firefox-esr` and `chromium` (native
//! Wayland) open a page served by a small HTTP server on loopback; text typed at the appliance
//! into the page's field reaches the server when the page posts it, a word copied in foot
//! (double-click, Ctrl+Shift+C) and pasted into the page (Ctrl+V) arrives byte for byte, and the
//! appliance's last frame equals the server's.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use support::*;

/// What foot prints and the test copies: non-ASCII and URL-special characters, one foot word.
const CLIP: &str = "clip-ÄÖÜ_4711/x=y";
const TYPED: &str = "typed@appliance:";

const PAGE: &str = "<!doctype html><html><head><meta charset=utf-8><title>WayRay form</title>\
<style>body{font:20px sans-serif;background:#fff}input{font:20px monospace;width:90%}</style>\
</head><body><form method=post action=/submit accept-charset=utf-8>\
<p>Type here:</p><input name=f autofocus autocomplete=off></form></body></html>";

/// What the page's server saw.
enum Seen {
    Page,
    Posted(String),
}

/// Serves `PAGE` on GET and reports every POSTed body, on a free loopback port.
fn start_http() -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, tx));
        }
    });
    (addr, rx)
}

fn serve(stream: TcpStream, tx: mpsc::Sender<Seen>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let (status, reply) = if request.starts_with("GET / ") {
        let _ = tx.send(Seen::Page);
        ("200 OK", PAGE.to_string())
    } else if request.starts_with("POST /submit") {
        let _ = tx.send(Seen::Posted(form_value(
            &String::from_utf8_lossy(&body),
            "f",
        )));
        (
            "200 OK",
            "<!doctype html><title>thanks</title><p>received".to_string(),
        )
    } else {
        ("404 Not Found", String::new())
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

/// The decoded value of `key` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &str, key: &str) -> String {
    let raw = body
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .unwrap_or_default();
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_for(rx: &mpsc::Receiver<Seen>, want_page: bool, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Seen::Page) if want_page => return None,
            Ok(Seen::Posted(v)) if !want_page => return Some(v),
            Ok(_) => continue,
            Err(_) => panic!(
                "timed out waiting for the browser to {}",
                if want_page {
                    "load the page"
                } else {
                    "post the form"
                }
            ),
        }
    }
}

fn last_frames_match(dir: &TempDir) {
    let appliance = read_frame_log(&dir.path("appliance-frames.log"));
    let server = read_frame_log(&dir.path("server-frames.log"));
    let last = appliance.last().expect("the appliance showed frames");
    assert!(
        server.contains(last),
        "the appliance's last frame {last:?} is not one the server rendered"
    );
}

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser's own process group: its content processes go too.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn browser_round_trip(tag: &str, start: impl FnOnce(&Server, &TempDir, &str) -> Child) {
    let dir = TempDir::new(tag);
    let (http, rx) = start_http();
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!("foot sh -c 'echo {CLIP}; exec sh'")],
            extra: &["--size", "1280x800", "--fixed-size"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));

    // Copy the word foot printed on its first line: double-click selects it, Ctrl+Shift+C
    // puts it on the clipboard. foot keeps offering it after the browser takes the focus.
    let (x, y) = server.mapped_at(0);
    run_appliance_script(
        &dir,
        &server,
        "copy.script",
        &format!(
            "wait 1000\nmove {} {}\nclick left\nclick left\nwait 300\ncombo ctrl+shift+c\nwait 300\nexit\n",
            x + 24.0,
            y + 9.0
        ),
        &[],
    );

    let url = format!("http://{http}/");
    let _browser = Browser(start(&server, &dir, &url));
    wait_for(&rx, true, Duration::from_secs(180));
    server.wait_log("mapping toplevel", 2, Duration::from_secs(180));
    // Typing goes to the autofocused field; Ctrl+V pastes foot's word; Enter posts the form.
    run_appliance_script(
        &dir,
        &server,
        "type.script",
        &format!("wait 4000\ntype {TYPED}\ncombo ctrl+v\nwait 500\nkey enter\nwait 3000\nexit\n"),
        &[],
    );
    let posted = wait_for(&rx, false, Duration::from_secs(60)).unwrap_or_default();
    assert_eq!(
        posted,
        format!("{TYPED}{CLIP}"),
        "the page posted something else"
    );
    last_frames_match(&dir);
}

fn process_group(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

#[test]
fn firefox_takes_typed_and_pasted_text() {
    browser_round_trip("firefox", |server, dir, url| {
        let profile = dir.path("firefox-profile");
        std::fs::create_dir_all(&profile).unwrap();
        // No first-run pages, no update or telemetry traffic: the page is the only tab.
        std::fs::write(
            profile.join("user.js"),
            [
                "user_pref(\"browser.aboutwelcome.enabled\", false);",
                "user_pref(\"browser.shell.checkDefaultBrowser\", false);",
                "user_pref(\"browser.startup.homepage_override.mstone\", \"ignore\");",
                "user_pref(\"datareporting.policy.dataSubmissionEnabled\", false);",
                "user_pref(\"toolkit.telemetry.reportingpolicy.firstRun\", false);",
                "user_pref(\"app.update.enabled\", false);",
                "user_pref(\"browser.tabs.warnOnClose\", false);",
                "user_pref(\"trailhead.firstrun.didSeeAboutWelcome\", true);",
                "user_pref(\"browser.startup.firstrunSkipsHomepage\", true);",
                "",
            ]
            .join("\n"),
        )
        .unwrap();
        let mut cmd = server.wayland_client("firefox-esr");
        cmd.env("MOZ_ENABLE_WAYLAND", "1")
            .env("HOME", dir.path("home"))
            .args(["--no-remote", "--new-instance", "--profile"])
            .arg(&profile)
            .arg(url);
        process_group(&mut cmd).spawn().expect("start firefox-esr")
    });
}

#[test]
fn chromium_takes_typed_and_pasted_text() {
    browser_round_trip("chromium", |server, dir, url| {
        let mut cmd = server.wayland_client("chromium");
        cmd.env("HOME", dir.path("home"))
            .args([
                "--ozone-platform=wayland",
                "--no-sandbox",
                "--no-first-run",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--password-store=basic",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path("chromium-profile").display()
            ))
            .arg(url);
        process_group(&mut cmd).spawn().expect("start chromium")
    });
}
