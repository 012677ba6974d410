//! Sound end to end with the real parts: the session's own PipeWire (with WirePlumber and
//! pipewire-pulse), real `pw-play`, `paplay` and `pw-record` in the session, Opus over QUIC
//! datagrams, and `wrclient`'s headless audio backend, which plays into a WAV file and records
//! from one at the pace of a real sound card. Tones are checked by their spectrum
//! (`scripts/tone.py`), never by bytes: the path is lossy by design.
//!
//! The two-user test needs root (PAM users, sessions as other users) and the vpcd readers; it
//! skips itself with a message otherwise.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::launcher::*;
use support::*;

/// A WAV of `seconds` of a sine at `hz`, 48 kHz, `channels`, 6 dB below full scale.
fn tone(dir: &TempDir, name: &str, hz: u32, seconds: f64, channels: u32) -> PathBuf {
    let path = dir.path(name);
    let status = Command::new("sox")
        .args(["-n", "-r", "48000", "-b", "16", "-c", &channels.to_string()])
        .arg(&path)
        .args([
            "synth",
            &seconds.to_string(),
            "sine",
            &hz.to_string(),
            "gain",
            "-6",
        ])
        .status()
        .expect("run sox (apt-get install sox)");
    assert!(status.success(), "sox failed for {name}");
    path
}

/// What `scripts/tone.py` found in a WAV at one frequency.
#[derive(Debug, serde::Deserialize)]
struct Tone {
    /// Time in 10 ms windows that hold the frequency, seconds.
    tone_s: f64,
    /// RMS level of those windows, dBFS (a full-scale sine is -3).
    level_dbfs: Option<f64>,
    /// Start of the first and end of the last such window, seconds from the file's start.
    onset_s: Option<f64>,
    end_s: Option<f64>,
    /// The longest run without it between onset and end, ms.
    longest_gap_ms: Option<f64>,
}

/// Analyses `wav` at `hz` (scripts/tone.py, shared with the QEMU test and the bench).
fn analyse(wav: &Path, hz: u32) -> Tone {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tone.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(wav)
        .args(["--freq", &hz.to_string()])
        .output()
        .expect("run scripts/tone.py");
    assert!(
        out.status.success(),
        "tone.py {} failed: {}",
        wav.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tone.py printed no analysis ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `program args` in the shared session's sound environment until it exits.
fn in_session(server: &Server, program: &str, args: &[&str]) -> std::process::Output {
    let child = server
        .audio_client(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    wait_with_timeout(child, Duration::from_secs(60))
}

/// The session's sink volume as `pactl` (and a panel) shows it, in percent.
fn sink_volume(server: &Server) -> Option<u32> {
    let out = in_session(server, "pactl", &["get-sink-volume", "@DEFAULT_SINK@"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_suffix('%'))
        .and_then(|v| v.parse().ok())
}

/// A headless appliance with WAV audio both ways and an audio report, until killed.
fn wav_appliance(
    dir: &TempDir,
    name: &str,
    server: std::net::SocketAddr,
    mic: &Path,
    script: &str,
) -> Killed {
    let script_path = dir.path(&format!("{name}.script"));
    std::fs::write(&script_path, script).unwrap();
    let child = Command::new(wrclient())
        .arg("--server")
        .arg(server.to_string())
        .arg("--state-dir")
        .arg(dir.path(&format!("{name}-state")))
        .arg("--audio-out-wav")
        .arg(dir.path(&format!("{name}.wav")))
        .arg("--audio-in-wav")
        .arg(mic)
        .arg("--audio-report")
        .arg(dir.path(&format!("{name}-audio.log")))
        .arg("--input-script")
        .arg(&script_path)
        .args(["--exit-after", "300"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path(&format!("{name}.log"))).unwrap())
        .spawn()
        .expect("start wrclient");
    Killed(child)
}

/// Ends an appliance with SIGTERM, as its supervisor would, so it writes out the rest of its
/// WAV and report.
fn stop(mut appliance: Killed) {
    unsafe {
        libc::kill(appliance.0.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    while appliance.running() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of an appliance's `--audio-report` of one kind, as key → value maps.
fn report(path: &Path, kind: &str) -> Vec<std::collections::HashMap<String, String>> {
    read(path)
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(kind))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn field(line: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    line.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// The session's sound reaches the appliance through PipeWire (`pw-play`) and PulseAudio
/// (`paplay` through pipewire-pulse) clients, at the level the sink's volume gives it, and
/// nothing is sent while the session is silent; the appliance's microphone records in the
/// session (`pw-record`); the volume keys of the appliance keyboard change the session's sink.
#[test]
fn session_sound_plays_on_the_appliance_and_its_microphone_records() {
    let dir = TempDir::new("audio");
    let server = Server::start(&dir, ServerOpts::default());
    let t440 = tone(&dir, "t440.wav", 440, 1.5, 2);
    let t660 = tone(&dir, "t660.wav", 660, 2.0, 1);
    // Volume down twice on the appliance keyboard: 100 % → 90 %.
    let appliance = wav_appliance(
        &dir,
        "a",
        server.listen,
        &t660,
        "wait 1500\nkey volumedown\nwait 300\nkey volumedown\nwait 600000\n",
    );
    let logs = || {
        format!(
            "--- wrsrvd\n{}\n--- appliance\n{}\n--- report\n{}",
            server.log(),
            read(&dir.path("a.log")),
            read(&dir.path("a-audio.log"))
        )
    };
    server.wait_log("appliance attached", 1, Duration::from_secs(30));
    let start = Instant::now();
    while sink_volume(&server) != Some(90) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the volume keys left the sink at {:?} %\n{}",
            sink_volume(&server),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let played = in_session(&server, "pw-play", &[t440.to_str().unwrap()]);
    assert!(played.status.success(), "pw-play: {played:?}");
    std::thread::sleep(Duration::from_millis(700));
    let played = in_session(&server, "paplay", &[t440.to_str().unwrap()]);
    assert!(played.status.success(), "paplay: {played:?}");
    // Silence afterwards costs nothing on the wire.
    std::thread::sleep(Duration::from_secs(2));

    // The microphone: pw-record from the session's default source (the appliance's).
    let recorded = dir.path("recorded.wav");
    let record = server
        .audio_client("pw-record")
        .args(["--rate", "48000", "--channels", "1"])
        .arg(&recorded)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pw-record");
    std::thread::sleep(Duration::from_secs(4));
    unsafe {
        libc::kill(record.id() as i32, libc::SIGINT);
    }
    let _ = wait_with_timeout(record, Duration::from_secs(10));
    stop(appliance);

    let heard = analyse(&dir.path("a.wav"), 440);
    // Two plays of 1.5 s each.
    assert!(
        heard.tone_s > 2.8 && heard.tone_s < 3.3,
        "the appliance played {heard:?} of the 3 s of 440 Hz\n{}",
        logs()
    );
    // sox's tone at -6 dB has an RMS of -9 dBFS; the sink at 90 % (PulseAudio's cubic scale:
    // 0.9³ = -2.7 dB) sends it at -11.7 dBFS.
    let level = heard.level_dbfs.unwrap_or(f64::MIN);
    assert!(
        (level + 11.7).abs() < 1.5,
        "the tone arrived at {level} dBFS, not at -11.7 (the sink at 90 %)\n{heard:?}\n{}",
        logs()
    );
    // 3 s of sound (plus each talkspurt's 200 ms tail) in the ~7 s the appliance was there:
    // no packets while the session was silent.
    let packets = report(&dir.path("a-audio.log"), "packet").len();
    assert!(
        (290..=400).contains(&packets),
        "{packets} packets for 3 s of sound\n{}",
        logs()
    );
    let mic = analyse(&recorded, 660);
    assert!(
        mic.tone_s > 3.0,
        "pw-record in the session recorded {mic:?} of the appliance's 660 Hz\n{}",
        logs()
    );
    assert!(
        !report(&dir.path("a-audio.log"), "mic-close").is_empty(),
        "the appliance's microphone stayed open after the recording ended\n{}",
        logs()
    );
}

/// Through the lossy relay (20 ms RTT, 5 % of the datagrams lost both ways) the tone has no
/// gap: Opus's in-band FEC (where the encoder carries it) and the appliance's concealment fill
/// every lost 10 ms.
#[test]
fn a_lossy_link_leaves_no_gap_in_the_sound() {
    let dir = TempDir::new("audio-loss");
    let server = Server::start(&dir, ServerOpts::default());
    let t440 = tone(&dir, "t440.wav", 440, 3.0, 2);
    let t660 = tone(&dir, "t660.wav", 660, 1.0, 1);
    let mut relay = Command::new(wrsrvd().parent().unwrap().join("examples").join("netem"))
        .arg("--to")
        .arg(server.listen.to_string())
        .args(["--delay-ms", "10", "--loss", "5", "--seed", "17"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netem (cargo build --examples)");
    let relay_at = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(relay.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim()
            .strip_prefix("NETEM_LISTEN=")
            .unwrap_or_else(|| panic!("netem said {line:?}"))
            .parse()
            .unwrap()
    };
    let _relay = Killed(relay);
    let appliance = wav_appliance(&dir, "a", relay_at, &t660, "wait 600000\n");
    server.wait_log("appliance attached", 1, Duration::from_secs(30));
    let played = in_session(&server, "pw-play", &[t440.to_str().unwrap()]);
    assert!(played.status.success(), "pw-play: {played:?}");
    std::thread::sleep(Duration::from_secs(1));
    stop(appliance);
    let logs = || {
        format!(
            "--- wrsrvd\n{}\n--- appliance\n{}\n--- report\n{}",
            server.log(),
            read(&dir.path("a.log")),
            read(&dir.path("a-audio.log"))
        )
    };
    let heard = analyse(&dir.path("a.wav"), 440);
    let talk = report(&dir.path("a-audio.log"), "talkspurt");
    let lost: u64 = talk.iter().map(|t| field(t, "lost")).sum();
    assert!(
        lost > 0,
        "5 % loss lost no packet of 300: the relay did not drop\n{}",
        logs()
    );
    assert!(
        heard.tone_s > 2.8,
        "{heard:?}: the tone did not arrive\n{}",
        logs()
    );
    assert!(
        heard.longest_gap_ms.unwrap_or(f64::MAX) <= 20.0,
        "a gap in the tone over the lossy link: {heard:?}, {lost} packets lost\n{talk:?}\n{}",
        logs()
    );
}

/// A user's session.toml: no desktop, and a client that waits for the session's WayRay sink and
/// then plays `wav`.
fn plays(user: &User, wav: &Path) {
    let cmd = format!(
        "sh -c 'until pactl get-default-sink 2>/dev/null | grep -q wayray; do sleep 0.2; done; exec pw-play {}'",
        wav.display()
    );
    user.autostart_only(&[&cmd]);
}

/// Two users on one server, each with a card and a session that plays its own tone: each
/// appliance hears only its own user's session. Then the first user's card moves from A to B
/// mid-tone: A falls silent at once, and B plays the rest of that user's tone.
#[test]
fn pcsc_each_user_hears_only_their_session_and_sound_follows_the_card() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as other users)");
        return;
    }
    let dir = TempDir::new("audio-users");
    // Readable by the test users' sessions.
    let t440 = tone(&dir, "t440.wav", 440, 60.0, 2);
    let t880 = tone(&dir, "t880.wav", 880, 60.0, 2);
    let pid = std::process::id() % 100000;
    let one = User::create(&format!("wrau{pid}"), "tone-440-pw");
    let two = User::create(&format!("wrav{pid}"), "tone-880-pw");
    plays(&one, &t440);
    plays(&two, &t880);
    let run_dir = dir.path("wayray-run");
    let server = Server::start(
        &dir,
        ServerOpts {
            launcher: true,
            extra: &["--run-dir", run_dir.to_str().unwrap()],
            ..Default::default()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let _sessd = start_wrsessd(&run_dir, &sessd_log);
    let all_logs = || {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- A\n{}\n--- A audio\n{}\n--- B\n{}\n--- B audio\n{}\n--- sessions\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log")),
            read(&dir.path("a-audio.log")),
            read(&dir.path("b.log")),
            read(&dir.path("b-audio.log")),
            session_logs(&run_dir)
        )
    };
    let login = |name: &str, user: &User, password: &str| {
        let script = dir.path(&format!("{name}.script"));
        std::fs::write(
            &script,
            format!(
                "wait 4000\ntype {}\nkey tab\ntype {password}\nkey enter\nwait 600000\n",
                user.0
            ),
        )
        .unwrap();
        script
    };
    let script_a = login("a", &one, "tone-440-pw");
    let script_b = login("b", &two, "tone-880-pw");
    let audio = |name: &str| -> Vec<String> {
        vec![
            "--audio-out-wav".into(),
            dir.path(&format!("{name}.wav")).display().to_string(),
            "--audio-report".into(),
            dir.path(&format!("{name}-audio.log")).display().to_string(),
        ]
    };
    let (audio_a, audio_b) = (audio("a"), audio("b"));

    let card_one = insert_card(&dir, PORT_A, "0A440440");
    let card_two = insert_card(&dir, PORT_B, "0B880880");
    let a = appliance_with(
        &dir,
        "a",
        server.listen,
        READER_A,
        &script_a,
        &audio_a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let b = appliance_with(
        &dir,
        "b",
        server.listen,
        READER_B,
        &script_b,
        &audio_b.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_for(
        "both users' sessions",
        Duration::from_secs(60),
        || server.log().matches("starting the user's session").count() >= 2,
        all_logs,
    );
    // Both tones play for a while on their own appliances.
    wait_for(
        "sound at both appliances",
        Duration::from_secs(60),
        || {
            read(&dir.path("a-audio.log")).contains("onset")
                && read(&dir.path("b-audio.log")).contains("onset")
        },
        all_logs,
    );
    std::thread::sleep(Duration::from_secs(3));

    // B's user leaves; then the first user's card goes from A to B.
    drop(card_two);
    wait_for(
        "B's session to be detached",
        Duration::from_secs(15),
        || server.log().matches("token removed").count() >= 1,
        all_logs,
    );
    std::thread::sleep(Duration::from_secs(1));
    drop(card_one);
    wait_for(
        "A's session to be detached",
        Duration::from_secs(15),
        || server.log().matches("token removed").count() >= 2,
        all_logs,
    );
    let _card_one_at_b = insert_card(&dir, PORT_B, "0A440440");
    wait_for(
        "the first user's tone at B",
        Duration::from_secs(30),
        || read(&dir.path("b-audio.log")).matches("onset").count() >= 2,
        all_logs,
    );
    std::thread::sleep(Duration::from_secs(3));
    stop(a);
    stop(b);

    let (a440, a880) = (
        analyse(&dir.path("a.wav"), 440),
        analyse(&dir.path("a.wav"), 880),
    );
    let (b440, b880) = (
        analyse(&dir.path("b.wav"), 440),
        analyse(&dir.path("b.wav"), 880),
    );
    let summary = format!("A: 440 {a440:?} 880 {a880:?}\nB: 440 {b440:?} 880 {b880:?}");
    assert!(
        a440.tone_s > 2.5,
        "A did not play its user's tone\n{summary}\n{}",
        all_logs()
    );
    assert!(
        b880.tone_s > 2.5,
        "B did not play its user's tone\n{summary}\n{}",
        all_logs()
    );
    assert!(
        a880.tone_s < 0.05,
        "A heard the other user's session\n{summary}\n{}",
        all_logs()
    );
    // Card out at A: the tone stopped there within a packet time of the appliance noticing
    // (its `flush`), in the WAV's own timeline (sample n was heard at wav-origin + n/48 kHz).
    let a_report = dir.path("a-audio.log");
    let origin = report(&a_report, "wav-origin")
        .first()
        .map(|l| field(l, "local_us"))
        .unwrap_or_else(|| panic!("A's report has no wav-origin\n{}", all_logs()));
    let card_out = report(&a_report, "flush")
        .iter()
        .filter(|l| l.get("why").is_some_and(|w| w == "token"))
        .map(|l| field(l, "stopped_us"))
        .next_back()
        .unwrap_or_else(|| {
            panic!(
                "A never stopped the sound for a token change\n{}",
                all_logs()
            )
        });
    let card_out_s = card_out.saturating_sub(origin) as f64 / 1e6;
    let a_end = a440.end_s.unwrap_or(f64::MAX);
    assert!(
        a_end <= card_out_s + 0.02,
        "A played on {:.0} ms after the card left\n{summary}\n{}",
        (a_end - card_out_s) * 1000.0,
        all_logs()
    );
    // B heard the first user only after the card came: 440 starts after 880 ended.
    assert!(
        b440.tone_s > 2.0,
        "the tone did not follow the card to B\n{summary}\n{}",
        all_logs()
    );
    assert!(
        b440.onset_s.unwrap_or(0.0) >= b880.end_s.unwrap_or(f64::MAX),
        "B heard the first user's session while it showed the second's\n{summary}\n{}",
        all_logs()
    );
}

/// Bad datagrams from an appliance (junk, an oversized payload, sound in the wrong direction)
/// are logged and dropped: the connection and the session go on.
#[tokio::test]
async fn bad_datagrams_cost_nothing_but_themselves() {
    let dir = TempDir::new("audio-bad");
    let server = Server::start(&dir, ServerOpts::default());
    let mut peer = RawAppliance::attach(server.listen, "bad-datagrams").await;
    let playback = wayray_protocol::Datagram::Playback(wayray_protocol::AudioPacket {
        seq: 1,
        time_us: 1,
        opus: vec![0xfc; 8],
    })
    .encode()
    .unwrap();
    let mut oversized = wayray_protocol::Datagram::Microphone(wayray_protocol::AudioPacket {
        seq: 1,
        time_us: 1,
        opus: vec![0; wayray_protocol::audio::MAX_OPUS_BYTES],
    })
    .encode()
    .unwrap();
    // Claim one byte more than the limit: the length prefix of the payload grows by one.
    oversized.push(0);
    for bytes in [vec![0xff; 40], playback, oversized] {
        peer.conn
            .send_datagram(bytes.into())
            .expect("send datagram");
    }
    // The runtime must keep driving the connection while the test waits for the log.
    let start = Instant::now();
    while !server.log().contains("dropping a malformed datagram") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server did not report the malformed datagram\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still connected and served.
    peer.display_for(Duration::from_secs(1)).await;
    assert!(
        peer.conn.close_reason().is_none(),
        "the connection ended after bad datagrams\n{}",
        server.log()
    );
}
