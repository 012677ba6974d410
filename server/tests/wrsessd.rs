//! `wrsessd` with real parts: real users (`useradd`, `chpasswd`), real PAM (`/etc/pam.d/wayray`
//! with pam_unix; `scripts/test` installs it, and these tests write it when it is missing), real
//! privilege drops and process groups. The test plays the daemon on `launcher.sock` and the
//! greeter on `login.sock`.
//!
//! The session compositor is a stand-in shell script (`--wrsrvd`) that prints its argv,
//! environment, uid and groups into its session log and then sleeps, so these tests check what
//! the launcher does, not what the compositor does.
//!
//! Needs root (creating users, PAM reading /etc/shadow); skipped otherwise.

use std::{
    error::Error,
    fs,
    io::{Read, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use wayray_protocol::{
    framing::{self, FrameReader},
    sessions::{
        session_id_string, FromLauncher, LauncherHello, LoginReply, LoginRequest, SessionId,
        ToLauncher,
    },
};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

const TIMEOUT: Duration = Duration::from_secs(20);
const PAM_SERVICE_FILE: &str = "/etc/pam.d/wayray";
const PASSWORD: &str = "correct horse 7";

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &str, args: &[&str]) -> TestResult<String> {
    let out = Command::new(cmd).args(args).output()?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `auth` + `account` with pam_unix, without the 2 s delay after a wrong password.
fn ensure_pam_service() -> TestResult {
    if Path::new(PAM_SERVICE_FILE).exists() {
        return Ok(());
    }
    let tmp = format!("{PAM_SERVICE_FILE}.tmp{}", std::process::id());
    fs::write(
        &tmp,
        "# WayRay logins (wrsessd). Installed by scripts/test.\n\
         auth required pam_unix.so nodelay\n\
         account required pam_unix.so\n",
    )?;
    fs::rename(&tmp, PAM_SERVICE_FILE)?;
    Ok(())
}

/// An extra PAM service file for one test, removed on drop.
struct PamService {
    name: String,
}

impl PamService {
    fn create(name: &str, text: &str) -> TestResult<Self> {
        fs::write(Path::new("/etc/pam.d").join(name), text)?;
        Ok(PamService {
            name: name.to_string(),
        })
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = fs::remove_file(Path::new("/etc/pam.d").join(&self.name));
    }
}

/// A real account, removed (with its home, its runtime dir and its extra group) on drop.
struct TestUser {
    name: String,
    uid: u32,
    extra_group: Option<String>,
}

impl TestUser {
    fn create(name: &str, extra_group: Option<&str>, password: &str) -> TestResult<Self> {
        // Left over from an interrupted run with the same pid: start from scratch.
        let _ = Command::new("userdel").args(["-r", "-f", name]).output();
        let mut user = TestUser {
            name: name.to_string(),
            uid: 0,
            extra_group: None,
        };
        let mut args = vec!["-m", "-s", "/bin/sh"];
        if let Some(group) = extra_group {
            let _ = Command::new("groupdel").arg(group).output();
            run("groupadd", &[group])?;
            user.extra_group = Some(group.to_string());
            args.extend(["-G", group]);
        }
        args.push(name);
        run("useradd", &args)?;
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn()?;
        if let Some(stdin) = chpasswd.stdin.as_mut() {
            stdin.write_all(format!("{name}:{password}\n").as_bytes())?;
        }
        ensure!(chpasswd.wait()?.success(), "chpasswd failed for {name}");
        user.uid = run("id", &["-u", name])?.parse()?;
        Ok(user)
    }

    fn home(&self) -> PathBuf {
        PathBuf::from("/home").join(&self.name)
    }

    /// `id -G` as a sorted list.
    fn groups(&self) -> TestResult<Vec<u32>> {
        parse_groups(&run("id", &["-G", &self.name])?)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
        if let Some(group) = &self.extra_group {
            let _ = Command::new("groupdel").arg(group).output();
        }
        let _ = fs::remove_dir_all(format!("/run/user/{}", self.uid));
    }
}

fn parse_groups(text: &str) -> TestResult<Vec<u32>> {
    let mut groups = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()?;
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

/// The stand-in for `wrsrvd session`: reports what it was given, then behaves as the file
/// `mode-<id>` next to it says (default: sleep until signalled).
const FAKE_WRSRVD: &str = r#"#!/bin/sh
id=""
prev=""
for a in "$@"; do
    [ "$prev" = "--id" ] && id="$a"
    prev="$a"
done
echo "UID $(id -u)"
echo "GROUPS $(id -G)"
echo "PWD $(pwd)"
echo "PGID $(cut -d' ' -f5 /proc/$$/stat)"
echo "PID $$"
echo "SECRET ${WAYRAY_SESSION_SECRET:-}"
echo "TICKET ${WAYRAY_LOGIN_TICKET:-}"
echo "UNLOCK_TICKET ${WAYRAY_UNLOCK_TICKET:-}"
echo "LOGIN_SOCKET ${WAYRAY_LOGIN_SOCKET:-}"
echo "RUNTIME ${XDG_RUNTIME_DIR:-}"
echo "RUNTIME_OWNER $(stat -c %u "$XDG_RUNTIME_DIR")"
echo "RUNTIME_MODE $(stat -c %a "$XDG_RUNTIME_DIR")"
echo "HOME ${HOME:-}"
echo "USER ${USER:-}"
echo "SESSION_TYPE ${XDG_SESSION_TYPE:-}"
echo "ENVKEYS $(env | cut -d= -f1 | sort | tr '\n' ' ')"
for a in "$@"; do echo "ARG $a"; done
mode=$(cat "$(dirname "$0")/mode-$id" 2>/dev/null)
case "$mode" in
    exit3) echo READY; exit 3 ;;
    ignore-term) trap '' TERM; echo READY; while :; do sleep 1; done ;;
esac
echo READY
exec sleep 600
"#;

/// A run directory the way the daemon would have it, with the stand-in compositor in it.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn new(tag: &str) -> TestResult<Self> {
        let path = std::env::temp_dir().join(format!("wrsessd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)?;
        // Session processes of other users reach their sockets through it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        let run_dir = RunDir { path };
        let script = run_dir.fake_wrsrvd();
        fs::write(&script, FAKE_WRSRVD)?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        Ok(run_dir)
    }

    fn fake_wrsrvd(&self) -> PathBuf {
        self.path.join("fake-wrsrvd")
    }

    fn set_mode(&self, id: SessionId, mode: &str) -> TestResult {
        let file = self.path.join(format!("mode-{}", session_id_string(id)));
        fs::write(&file, mode)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    fn session_log(&self, id: SessionId) -> PathBuf {
        self.path
            .join("sessions")
            .join(format!("{}.log", session_id_string(id)))
    }

    /// The stand-in's report for session `id`, once it printed READY.
    fn report(&self, id: SessionId) -> TestResult<Report> {
        let path = self.session_log(id);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if text.lines().any(|l| l == "READY") {
                return Ok(Report(text));
            }
            ensure!(
                Instant::now() < deadline,
                "{} never said READY: {text:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

struct Report(String);

impl Report {
    fn get(&self, key: &str) -> TestResult<String> {
        let prefix = format!("{key} ");
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).or((l == key).then_some("")))
            .map(str::to_string)
            .ok_or_else(|| format!("no {key} in the report: {:?}", self.0).into())
    }

    fn args(&self) -> Vec<String> {
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix("ARG "))
            .map(str::to_string)
            .collect()
    }

    fn env_keys(&self) -> TestResult<Vec<String>> {
        let mut keys: Vec<String> = self
            .get("ENVKEYS")?
            .split_whitespace()
            // Set by sh itself.
            .filter(|k| !["PWD", "OLDPWD", "SHLVL", "_"].contains(k))
            .map(str::to_string)
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// The real `wrsessd`, killed with everything it started on drop.
struct Launcher {
    child: Child,
    session_pids: Vec<u32>,
    stderr: PathBuf,
}

impl Launcher {
    fn start(
        run_dir: &RunDir,
        greeter_user: &str,
        wrlogin: &Path,
        pam_service: &str,
    ) -> TestResult<Self> {
        let stderr = run_dir.path.join("wrsessd.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_wrsessd"))
            .arg("--run-dir")
            .arg(&run_dir.path)
            .arg("--wrsrvd")
            .arg(run_dir.fake_wrsrvd())
            .arg("--wrlogin")
            .arg(wrlogin)
            .args(["--greeter-user", greeter_user, "--pam-service", pam_service])
            .env("RUST_LOG", "wrsessd=debug")
            .env("LANG", "C.UTF-8")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr)?)
            .spawn()?;
        Ok(Launcher {
            child,
            session_pids: Vec::new(),
            stderr,
        })
    }

    fn still_running(&mut self) -> TestResult {
        let status = self.child.try_wait()?;
        ensure!(
            status.is_none(),
            "wrsessd exited ({status:?}): {}",
            self.log()
        );
        Ok(())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.session_pids {
            // SAFETY: kill has no memory preconditions; a group that is gone gives ESRCH.
            unsafe { libc::kill(-(*pid as i32), libc::SIGKILL) };
        }
        // Captured by the test harness: shown only when the test fails.
        eprintln!("wrsessd log:\n{}", self.log());
    }
}

/// The daemon's side of `launcher.sock`.
struct FakeDaemon {
    listener: UnixListener,
    conn: Option<(UnixStream, FrameReader)>,
}

impl FakeDaemon {
    fn bind(run_dir: &RunDir) -> TestResult<Self> {
        let listener = UnixListener::bind(run_dir.path.join("launcher.sock"))?;
        listener.set_nonblocking(true)?;
        Ok(FakeDaemon {
            listener,
            conn: None,
        })
    }

    /// Waits for wrsessd to connect and returns its hello.
    fn accept(&mut self) -> TestResult<LauncherHello> {
        let deadline = Instant::now() + TIMEOUT;
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    ensure!(Instant::now() < deadline, "wrsessd never connected");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => return Err(err.into()),
            }
        };
        stream.set_nonblocking(false)?;
        let mut stream = stream;
        let mut reader = FrameReader::new(1 << 16);
        let hello = read_message(&mut stream, &mut reader)?;
        self.conn = Some((stream, reader));
        Ok(hello)
    }

    fn send(&mut self, msg: &ToLauncher) -> TestResult {
        let (stream, _) = self.conn.as_mut().ok_or("not connected")?;
        stream.write_all(&framing::encode(msg)?)?;
        Ok(())
    }

    fn recv(&mut self) -> TestResult<FromLauncher> {
        let (stream, reader) = self.conn.as_mut().ok_or("not connected")?;
        read_message(stream, reader)
    }

    /// Drops the connection, as a restarting daemon would.
    fn hang_up(&mut self) {
        self.conn = None;
    }
}

fn read_message<T: serde::de::DeserializeOwned>(
    stream: &mut UnixStream,
    reader: &mut FrameReader,
) -> TestResult<T> {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(msg) = reader.next::<T>()? {
            return Ok(msg);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(!left.is_zero(), "no message within {TIMEOUT:?}");
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "connection closed");
        reader.push(&buf[..n]);
    }
}

/// One greeter login on a fresh connection to `login.sock`.
fn login(run_dir: &RunDir, ticket: &str, username: &str, password: &str) -> TestResult<LoginReply> {
    login_at(&run_dir.path.join("login.sock"), ticket, username, password)
}

fn login_at(socket: &Path, ticket: &str, username: &str, password: &str) -> TestResult<LoginReply> {
    let mut stream = UnixStream::connect(socket)?;
    let request = LoginRequest::Login {
        ticket: ticket.to_string(),
        username: username.to_string(),
        password: password.to_string(),
    };
    stream.write_all(&framing::encode(&request)?)?;
    read_message(&mut stream, &mut FrameReader::new(1 << 16))
}

/// A locker's unlock on a fresh connection to `login.sock`.
fn unlock(run_dir: &RunDir, ticket: &str, password: &str) -> TestResult<LoginReply> {
    let mut stream = UnixStream::connect(run_dir.path.join("login.sock"))?;
    let request = LoginRequest::Unlock {
        ticket: ticket.to_string(),
        password: password.to_string(),
    };
    stream.write_all(&framing::encode(&request)?)?;
    read_message(&mut stream, &mut FrameReader::new(1 << 16))
}

fn wrong_credentials() -> LoginReply {
    LoginReply::Refused {
        message: "Wrong user name or password".to_string(),
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn expect_started(daemon: &mut FakeDaemon, session: SessionId) -> TestResult<u32> {
    match daemon.recv()? {
        FromLauncher::Started { session: s, pid } if s == session => Ok(pid),
        other => Err(format!("expected Started for {session:x}, got {other:?}").into()),
    }
}

fn expect_exited(daemon: &mut FakeDaemon, session: SessionId) -> TestResult<String> {
    match daemon.recv()? {
        FromLauncher::Exited { session: s, status } if s == session => Ok(status),
        other => Err(format!("expected Exited for {session:x}, got {other:?}").into()),
    }
}

#[test]
fn greeter_login_and_user_session() -> TestResult {
    if !is_root() {
        eprintln!("skipped: wrsessd tests create users and need root");
        return Ok(());
    }
    ensure_pam_service()?;
    let pid = std::process::id();
    let greeter = TestUser::create(&format!("wrtestg_{pid}"), None, "unused greeter pw")?;
    let user = TestUser::create(
        &format!("wrtest_{pid}"),
        Some(&format!("wrtestgrp_{pid}")),
        PASSWORD,
    )?;
    let config_dir = user.home().join(".config/wayray");
    fs::create_dir_all(&config_dir)?;
    fs::write(
        config_dir.join("session.toml"),
        "window_manager = \"my-wm --tiling\"\npanel = \"my-panel\"\nautostart = [\"foot\", \"weston-terminal\"]\nscale = 1.25\n",
    )?;
    run(
        "chown",
        &[
            "-R",
            &format!("{0}:{0}", user.name),
            &user.home().join(".config").to_string_lossy(),
        ],
    )?;

    let run_dir = RunDir::new("login")?;
    // A wrlogin path with a space: it reaches the compositor as one shell word.
    let wrlogin_dir = run_dir.path.join("greeter bin");
    fs::create_dir_all(&wrlogin_dir)?;
    let wrlogin = wrlogin_dir.join("wrlogin");
    fs::write(&wrlogin, "#!/bin/sh\n")?;

    // wrsessd starts before the daemon: it must wait for it.
    let mut launcher = Launcher::start(&run_dir, &greeter.name, &wrlogin, "wayray")?;
    std::thread::sleep(Duration::from_millis(600));
    launcher.still_running()?;
    let mut daemon = FakeDaemon::bind(&run_dir)?;
    let hello = daemon.accept()?;
    ensure!(
        hello.pid == launcher.child.id(),
        "hello from pid {}",
        hello.pid
    );

    // --- the greeter -------------------------------------------------------------------------
    let greeter_id: SessionId = 0x10;
    daemon.send(&ToLauncher::GreeterRequested {
        token: "card-1".into(),
        session: greeter_id,
        secret: "greeter-secret".into(),
        notice: None,
    })?;
    let greeter_pid = expect_started(&mut daemon, greeter_id)?;
    launcher.session_pids.push(greeter_pid);
    let report = run_dir.report(greeter_id)?;
    ensure!(
        report.get("UID")? == greeter.uid.to_string(),
        "greeter uid: {}",
        report.0
    );
    ensure!(
        parse_groups(&report.get("GROUPS")?)? == greeter.groups()?,
        "greeter groups: {}",
        report.0
    );
    ensure!(
        report.get("PGID")? == greeter_pid.to_string(),
        "own process group: {}",
        report.0
    );
    ensure!(
        report.get("PID")? == greeter_pid.to_string(),
        "pid: {}",
        report.0
    );
    ensure!(
        report.get("SECRET")? == "greeter-secret",
        "secret: {}",
        report.0
    );
    let ticket = report.get("TICKET")?;
    ensure!(
        ticket.len() == 32 && ticket.chars().all(|c| c.is_ascii_hexdigit()),
        "ticket {ticket:?}"
    );
    let login_socket = run_dir.path.join("login.sock");
    ensure!(
        report.get("LOGIN_SOCKET")? == login_socket.to_string_lossy(),
        "login socket: {}",
        report.0
    );
    let greeter_runtime = run_dir
        .path
        .join("runtime")
        .join(session_id_string(greeter_id));
    ensure!(
        report.get("RUNTIME")? == greeter_runtime.to_string_lossy(),
        "greeter runtime dir: {}",
        report.0
    );
    ensure!(
        report.get("RUNTIME_OWNER")? == greeter.uid.to_string(),
        "{}",
        report.0
    );
    ensure!(report.get("RUNTIME_MODE")? == "700", "{}", report.0);
    let sessions_socket = run_dir.path.join("sessions.sock");
    let wrlogin_word = format!("'{}'", wrlogin.display());
    let expected_args = [
        "session",
        "--id",
        "0000000000000010",
        "--daemon",
        &sessions_socket.to_string_lossy(),
        "--spawn",
        &wrlogin_word,
        // Greeters have no clipboard: nothing typed at the login prompt can be pasted.
        "--no-clipboard",
        // Nor sound: no PipeWire for a login form.
        "--no-audio",
    ];
    ensure!(
        report.args() == expected_args,
        "greeter args: {:?}",
        report.args()
    );
    let mode = fs::metadata(&login_socket)?.permissions().mode();
    ensure!(mode & 0o777 == 0o666, "login.sock mode {mode:o}");

    // --- logins ------------------------------------------------------------------------------
    let reply = login(&run_dir, &ticket, &user.name, "wrong password")?;
    ensure!(reply == wrong_credentials(), "wrong password: {reply:?}");
    match daemon.recv()? {
        FromLauncher::AuthFailed {
            greeter: g,
            token,
            user: u,
            reason,
        } => ensure!(
            g == greeter_id && token == "card-1" && u == user.name && !reason.is_empty(),
            "AuthFailed {g:x} {token} {u} {reason}"
        ),
        other => return Err(format!("expected AuthFailed, got {other:?}").into()),
    }
    // An unknown user gets the very same answer.
    let reply = login(&run_dir, &ticket, &format!("nosuchuser_{pid}"), PASSWORD)?;
    ensure!(reply == wrong_credentials(), "unknown user: {reply:?}");
    ensure!(
        matches!(daemon.recv()?, FromLauncher::AuthFailed { .. }),
        "AuthFailed for the unknown user"
    );
    let reply = login(
        &run_dir,
        "00000000000000000000000000000000",
        &user.name,
        PASSWORD,
    )?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "made-up ticket: {reply:?}"
    );

    let reply = login(&run_dir, &ticket, &user.name, PASSWORD)?;
    ensure!(reply == LoginReply::Accepted, "right password: {reply:?}");
    let authenticated = daemon.recv()?;
    ensure!(
        authenticated
            == FromLauncher::Authenticated {
                greeter: greeter_id,
                token: "card-1".into(),
                user: user.name.clone(),
            },
        "got {authenticated:?}"
    );
    // The ticket is spent.
    let reply = login(&run_dir, &ticket, &user.name, PASSWORD)?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "spent ticket: {reply:?}"
    );

    // --- the user's session ------------------------------------------------------------------
    let user_id: SessionId = 0x20;
    daemon.send(&ToLauncher::StartUserSession {
        greeter: greeter_id,
        token: "card-1".into(),
        user: user.name.clone(),
        session: user_id,
        secret: "user-secret".into(),
    })?;
    let user_pid = expect_started(&mut daemon, user_id)?;
    launcher.session_pids.push(user_pid);
    let report = run_dir.report(user_id)?;
    ensure!(
        report.get("UID")? == user.uid.to_string(),
        "user uid: {}",
        report.0
    );
    let groups = parse_groups(&report.get("GROUPS")?)?;
    let extra_gid: u32 = run("getent", &["group", &format!("wrtestgrp_{pid}")])?
        .split(':')
        .nth(2)
        .ok_or("getent group")?
        .parse()?;
    ensure!(
        groups == user.groups()? && groups.contains(&extra_gid),
        "user groups {groups:?}, expected {:?} with {extra_gid}",
        user.groups()?
    );
    ensure!(
        report.get("PGID")? == user_pid.to_string(),
        "own process group: {}",
        report.0
    );
    ensure!(
        report.get("PWD")? == user.home().to_string_lossy(),
        "cwd: {}",
        report.0
    );
    ensure!(
        report.get("HOME")? == user.home().to_string_lossy(),
        "HOME: {}",
        report.0
    );
    ensure!(report.get("USER")? == user.name, "USER: {}", report.0);
    ensure!(
        report.get("SECRET")? == "user-secret",
        "secret: {}",
        report.0
    );
    ensure!(
        report.get("TICKET")?.is_empty(),
        "a user session has no ticket"
    );
    ensure!(report.get("SESSION_TYPE")? == "wayland", "{}", report.0);
    let runtime = format!("/run/user/{}", user.uid);
    ensure!(
        report.get("RUNTIME")? == runtime,
        "runtime dir: {}",
        report.0
    );
    ensure!(
        report.get("RUNTIME_OWNER")? == user.uid.to_string(),
        "{}",
        report.0
    );
    ensure!(report.get("RUNTIME_MODE")? == "700", "{}", report.0);
    let keys = report.env_keys()?;
    let expected_keys = [
        "HOME",
        "LANG",
        "LOGNAME",
        "PATH",
        "SHELL",
        "USER",
        // The session's locker checks the user's password at login.sock with this ticket.
        "WAYRAY_LOGIN_SOCKET",
        "WAYRAY_SESSION_SECRET",
        "WAYRAY_UNLOCK_TICKET",
        "XDG_RUNTIME_DIR",
        "XDG_SESSION_TYPE",
    ];
    ensure!(keys == expected_keys, "environment: {keys:?}");
    let unlock_ticket = report.get("UNLOCK_TICKET")?;
    ensure!(
        unlock_ticket.len() == 32 && unlock_ticket != ticket,
        "unlock ticket {unlock_ticket:?}"
    );
    let expected_args = [
        "session",
        "--id",
        "0000000000000020",
        "--daemon",
        &sessions_socket.to_string_lossy(),
        // session.toml names no other desktop: the default one.
        "--desktop",
        // Its window manager, the one client allowed to bind the WM protocol.
        "--wm",
        "my-wm --tiling",
        // The user's own scale from session.toml.
        "--scale",
        "1.25",
        // The locker for a locked re-attach.
        "--locker",
        &wrlogin.to_string_lossy(),
        "--spawn",
        "my-panel",
        "--spawn",
        "foot",
        "--spawn",
        "weston-terminal",
    ];
    ensure!(
        report.args() == expected_args,
        "user args: {:?}",
        report.args()
    );

    // The greeter is stopped once the user's session is up.
    let status = expect_exited(&mut daemon, greeter_id)?;
    ensure!(status == "signal: 15", "greeter ended with {status}");
    ensure!(!alive(greeter_pid), "greeter still alive");
    ensure!(!greeter_runtime.exists(), "greeter runtime dir left behind");
    // Its ticket died with it.
    let reply = login(&run_dir, &ticket, &user.name, PASSWORD)?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "stale ticket: {reply:?}"
    );

    // --- the session's locker unlocks with the user's password only ---------------------------
    let reply = unlock(&run_dir, &unlock_ticket, "wrong password")?;
    ensure!(
        reply
            == LoginReply::Refused {
                message: "Wrong password".into()
            },
        "wrong unlock password: {reply:?}"
    );
    match daemon.recv()? {
        FromLauncher::UnlockFailed {
            session,
            user: u,
            reason,
        } => ensure!(
            session == user_id && u == user.name && !reason.is_empty(),
            "UnlockFailed {session:x} {u} {reason}"
        ),
        other => return Err(format!("expected UnlockFailed, got {other:?}").into()),
    }
    // Another account's right password does not unlock this user's session.
    let reply = unlock(&run_dir, &unlock_ticket, "unused greeter pw")?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "another user's password: {reply:?}"
    );
    ensure!(
        matches!(daemon.recv()?, FromLauncher::UnlockFailed { .. }),
        "UnlockFailed for another user's password"
    );
    let reply = unlock(&run_dir, "00000000000000000000000000000000", PASSWORD)?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "made-up unlock ticket: {reply:?}"
    );
    // A login ticket is no unlock ticket, nor the other way round.
    let reply = login(&run_dir, &unlock_ticket, &user.name, PASSWORD)?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "unlock ticket used to log in: {reply:?}"
    );
    let reply = unlock(&run_dir, &unlock_ticket, PASSWORD)?;
    ensure!(
        reply == LoginReply::Accepted,
        "right unlock password: {reply:?}"
    );
    let unlocked = daemon.recv()?;
    ensure!(
        unlocked
            == FromLauncher::Unlocked {
                session: user_id,
                user: user.name.clone(),
            },
        "got {unlocked:?}"
    );
    // Not spent: the session locks again another day.
    let reply = unlock(&run_dir, &unlock_ticket, PASSWORD)?;
    ensure!(reply == LoginReply::Accepted, "second unlock: {reply:?}");
    ensure!(
        matches!(daemon.recv()?, FromLauncher::Unlocked { .. }),
        "Unlocked again"
    );

    // --- the daemon restarts: sessions stay, wrsessd comes back --------------------------------
    daemon.hang_up();
    let hello = daemon.accept()?;
    ensure!(hello.pid == launcher.child.id(), "hello after reconnect");
    ensure!(alive(user_pid), "user session died with the daemon link");

    // --- stop --------------------------------------------------------------------------------
    daemon.send(&ToLauncher::Stop { session: user_id })?;
    let status = expect_exited(&mut daemon, user_id)?;
    ensure!(status == "signal: 15", "user session ended with {status}");
    ensure!(!alive(user_pid), "user session still alive");
    // The unlock ticket died with its session.
    let reply = unlock(&run_dir, &unlock_ticket, PASSWORD)?;
    ensure!(
        matches!(reply, LoginReply::Refused { .. }),
        "unlock ticket of an ended session: {reply:?}"
    );
    launcher.still_running()?;
    Ok(())
}

#[test]
fn stop_escalates_crashes_are_reported_and_bad_requests_fail() -> TestResult {
    if !is_root() {
        eprintln!("skipped: wrsessd tests create users and need root");
        return Ok(());
    }
    let pid = std::process::id();
    let run_dir = RunDir::new("stop")?;
    let mut daemon = FakeDaemon::bind(&run_dir)?;
    // A greeter user that does not exist: greeters run as nobody.
    // pam_unix with its delay after a wrong password, to see that one greeter's failing login
    // does not hold up another's.
    let slow_pam = PamService::create(
        &format!("wayray-slowtest-{pid}"),
        "auth required pam_unix.so\naccount required pam_unix.so\n",
    )?;
    let user = TestUser::create(&format!("wrtests_{pid}"), None, PASSWORD)?;
    let mut launcher = Launcher::start(
        &run_dir,
        &format!("wrtest_nosuch_{pid}"),
        &run_dir.fake_wrsrvd(),
        &slow_pam.name,
    )?;
    daemon.accept()?;
    let nobody_uid = run("id", &["-u", "nobody"])?;

    // A session that ignores SIGTERM gets SIGKILL after the grace period.
    let stubborn: SessionId = 0x30;
    run_dir.set_mode(stubborn, "ignore-term")?;
    daemon.send(&ToLauncher::GreeterRequested {
        token: "t".into(),
        session: stubborn,
        secret: "s".into(),
        notice: None,
    })?;
    let stubborn_pid = expect_started(&mut daemon, stubborn)?;
    launcher.session_pids.push(stubborn_pid);
    let report = run_dir.report(stubborn)?;
    ensure!(
        report.get("UID")? == nobody_uid,
        "fallback greeter user: {}",
        report.0
    );
    let stop_sent = Instant::now();
    daemon.send(&ToLauncher::Stop { session: stubborn })?;
    // A second Stop changes nothing.
    daemon.send(&ToLauncher::Stop { session: stubborn })?;
    let status = expect_exited(&mut daemon, stubborn)?;
    let took = stop_sent.elapsed();
    ensure!(
        status == "signal: 9",
        "stubborn session ended with {status}"
    );
    ensure!(
        took >= Duration::from_millis(4500),
        "SIGKILL came after {took:?}, before the grace period"
    );

    // A compositor that crashes right away: Started, then Exited with its status.
    let crashing: SessionId = 0x31;
    run_dir.set_mode(crashing, "exit3")?;
    daemon.send(&ToLauncher::GreeterRequested {
        token: "t2".into(),
        session: crashing,
        secret: "s".into(),
        notice: None,
    })?;
    launcher
        .session_pids
        .push(expect_started(&mut daemon, crashing)?);
    let status = expect_exited(&mut daemon, crashing)?;
    ensure!(
        status == "exit status: 3",
        "crashing session ended with {status}"
    );

    // Two greeters: a wrong password in one (pam_unix then waits about 2 s) holds up neither
    // the other greeter nor anything else, and a second attempt with the same ticket meanwhile
    // is turned away at once.
    let (slow, fast): (SessionId, SessionId) = (0x33, 0x34);
    let mut tickets = Vec::new();
    for (id, token) in [(slow, "slow"), (fast, "fast")] {
        daemon.send(&ToLauncher::GreeterRequested {
            token: token.into(),
            session: id,
            secret: "s".into(),
            notice: None,
        })?;
        launcher.session_pids.push(expect_started(&mut daemon, id)?);
        tickets.push(run_dir.report(id)?.get("TICKET")?);
    }
    let (slow_ticket, fast_ticket) = (tickets[0].clone(), tickets[1].clone());
    let failing = {
        let socket = run_dir.path.join("login.sock");
        let (ticket, name) = (slow_ticket.clone(), user.name.clone());
        std::thread::spawn(move || -> Result<(LoginReply, Duration), String> {
            let started = Instant::now();
            let reply = login_at(&socket, &ticket, &name, "wrong").map_err(|e| e.to_string())?;
            Ok((reply, started.elapsed()))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let busy = login(&run_dir, &slow_ticket, &user.name, PASSWORD)?;
    ensure!(
        matches!(&busy, LoginReply::Refused { message } if message.contains("already")),
        "second attempt on a busy ticket: {busy:?}"
    );
    let accepted = login(&run_dir, &fast_ticket, &user.name, PASSWORD)?;
    let took = started.elapsed();
    ensure!(
        accepted == LoginReply::Accepted,
        "other greeter: {accepted:?}"
    );
    ensure!(
        took < Duration::from_millis(1000),
        "other greeter waited {took:?}"
    );
    let (failed, failed_took) = failing.join().map_err(|_| "login thread panicked")??;
    ensure!(failed == wrong_credentials(), "wrong password: {failed:?}");
    ensure!(
        failed_took >= Duration::from_millis(1000),
        "no PAM delay ({failed_took:?}): the test does not show what it should"
    );
    ensure!(
        matches!(daemon.recv()?, FromLauncher::Authenticated { greeter, .. } if greeter == fast),
        "Authenticated for the fast greeter first"
    );
    ensure!(
        matches!(daemon.recv()?, FromLauncher::AuthFailed { greeter, .. } if greeter == slow),
        "then AuthFailed for the slow one"
    );
    for id in [slow, fast] {
        daemon.send(&ToLauncher::Stop { session: id })?;
        let status = expect_exited(&mut daemon, id)?;
        ensure!(status == "signal: 15", "greeter {id:x} ended with {status}");
    }

    // No such user: Failed, and wrsessd carries on.
    daemon.send(&ToLauncher::StartUserSession {
        greeter: crashing,
        token: "t2".into(),
        user: format!("nosuchuser_{pid}"),
        session: 0x32,
        secret: "s".into(),
    })?;
    match daemon.recv()? {
        FromLauncher::Failed { session, reason } => ensure!(
            session == 0x32 && reason.contains("no user"),
            "Failed {session:x}: {reason}"
        ),
        other => return Err(format!("expected Failed, got {other:?}").into()),
    }
    launcher.still_running()?;
    Ok(())
}
