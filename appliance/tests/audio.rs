//! Sound on the real `wrclient` with the headless backends: Opus packets of a 440 Hz tone sent
//! as QUIC datagrams come out in its `--audio-out-wav` file (checked by spectrum, not bytes),
//! and when the server asks for the microphone, the `--audio-in-wav` 660 Hz tone comes back as
//! `Datagram::Microphone` packets — with the system-call filter on, as on an appliance.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use wayray_protocol::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use wayray_protocol::{AudioCapabilities, AudioPacket, ClientControl, Datagram, ServerControl};

const W: u32 = 64;
const H: u32 = 48;

fn now_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// `seconds` of a sine at `freq` Hz, amplitude 0.3, as `channels` interleaved channels.
fn tone(freq: f64, seconds: f64, channels: usize) -> Vec<i16> {
    let frames = (seconds * SAMPLE_RATE as f64) as usize;
    (0..frames)
        .flat_map(|i| {
            let v = (2.0 * std::f64::consts::PI * freq * i as f64 / SAMPLE_RATE as f64).sin();
            std::iter::repeat_n((v * 0.3 * 32767.0) as i16, channels)
        })
        .collect()
}

/// Power of `freq` in mono `samples` (Goertzel).
fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / SAMPLE_RATE as f64).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = x as f64 / 32768.0 + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / samples.len().max(1) as f64
}

/// Whether `freq` dominates the other test frequencies in `samples`.
fn assert_dominant(samples: &[i16], freq: f64) {
    let power = goertzel(samples, freq);
    for other in [220.0, 330.0, 440.0, 550.0, 660.0, 880.0] {
        if other != freq {
            let p = goertzel(samples, other);
            assert!(power > 20.0 * p, "{freq} Hz: {power}, {other} Hz: {p}");
        }
    }
    // Loud enough to be the tone, not leakage: the tone's RMS is 0.3/√2.
    assert!(power > 0.001, "{freq} Hz too weak: {power}");
}

fn write_wav(path: &Path, channels: u16, samples: &[i16]) {
    let data = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&channels.to_le_bytes());
    bytes.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    bytes.extend_from_slice(&(SAMPLE_RATE * 2 * channels as u32).to_le_bytes());
    bytes.extend_from_slice(&(2 * channels).to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data.to_le_bytes());
    bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// (channels, rate, samples) of a canonical PCM WAV file, trusting its header's data size.
fn read_wav(path: &Path) -> (u16, u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..16], b"WAVEfmt ");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    assert_eq!(&bytes[36..40], b"data");
    let len = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    assert!(
        44 + len <= bytes.len(),
        "header claims more than the file has"
    );
    let samples = bytes[44..44 + len]
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
        .collect();
    (channels, rate, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_the_sessions_tone_and_sends_the_microphone() {
    let dir = tempfile::tempdir().unwrap();
    let (out, mic, report) = (
        dir.path().join("out.wav"),
        dir.path().join("mic.wav"),
        dir.path().join("audio.report"),
    );
    write_wav(&mic, 1, &tone(660.0, 1.0, 1));
    let server = TestServer::start();
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--screen",
            "64x48",
            "--audio-out-wav",
            out.to_str().unwrap(),
            "--audio-in-wav",
            mic.to_str().unwrap(),
            "--audio-report",
            report.to_str().unwrap(),
        ],
    ));
    let mut appliance = server.accept().await;
    let hello = appliance.expect_hello().await;
    assert_eq!(
        hello.capabilities.audio,
        AudioCapabilities {
            speaker: true,
            microphone: true
        }
    );
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    let mut frame = key_frame(1, W, H, &test_pattern(W, H));
    frame.time_us = now_us();
    appliance.send_frame(frame).await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 1 })
    );

    // One second of 440 Hz, in 100 packets of 10 ms sent at real-time pace, stamped with the
    // session clock (the same CLOCK_MONOTONIC here). A junk datagram midway is dropped.
    let mut encoder = opus::Encoder::new(
        SAMPLE_RATE,
        opus::Channels::Stereo,
        opus::Application::Audio,
    )
    .unwrap();
    encoder.set_inband_fec(true).unwrap();
    let pcm = tone(440.0, 1.0, 2);
    let start = now_us();
    for (seq, chunk) in pcm.chunks_exact(FRAME_SAMPLES * 2).enumerate() {
        let opus = encoder.encode_vec(chunk, 1000).unwrap();
        // Stamped by its first sample's position, as the session does.
        let time_us = start + seq as u64 * 10_000;
        tokio::time::sleep(Duration::from_micros(time_us.saturating_sub(now_us()))).await;
        let packet = AudioPacket {
            seq: seq as u64,
            time_us,
            opus,
        };
        appliance.send_datagram(Datagram::Playback(packet).encode().unwrap());
        if seq == 50 {
            appliance.send_datagram(vec![7, 7, 7]);
        }
    }

    // The microphone: only once asked for.
    assert_eq!(
        appliance.next_datagram(Duration::from_millis(200)).await,
        None
    );
    appliance
        .send_control(&ServerControl::Microphone { open: true })
        .await;
    let mut samples = Vec::new();
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).unwrap();
    let mut last_seq = None;
    let mut last_time = 0;
    while samples.len() < SAMPLE_RATE as usize / 2 {
        let bytes = appliance
            .next_datagram(STEP_TIMEOUT)
            .await
            .expect("microphone packets");
        let Datagram::Microphone(packet) = Datagram::decode(&bytes).unwrap() else {
            panic!("not a microphone packet");
        };
        if let Some(last) = last_seq {
            assert_eq!(
                packet.seq,
                last + 1,
                "the appliance numbers packets in order"
            );
            assert!(packet.time_us >= last_time + 9_000 && packet.time_us <= last_time + 11_000);
        }
        // Stamped on the session clock: captured moments ago.
        assert!(packet.time_us <= now_us() && packet.time_us + 500_000 > now_us());
        (last_seq, last_time) = (Some(packet.seq), packet.time_us);
        let mut out = vec![0i16; FRAME_SAMPLES];
        let n = decoder.decode(&packet.opus, &mut out, false).unwrap();
        assert_eq!(n, FRAME_SAMPLES);
        samples.extend_from_slice(&out);
    }
    // Past the encoder's start-up.
    assert_dominant(&samples[4800..], 660.0);
    appliance
        .send_control(&ServerControl::Microphone { open: false })
        .await;
    // What was on its way still arrives; then nothing.
    while appliance
        .next_datagram(Duration::from_millis(300))
        .await
        .is_some()
    {}
    assert_eq!(
        appliance.next_datagram(Duration::from_millis(300)).await,
        None,
        "the microphone stays closed"
    );

    client.signal("TERM");
    let output = client.wait().await;
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("dropping a bad datagram"), "{log}");

    // The WAV: stereo 48 kHz, one second of 440 Hz (in 10 ms blocks: loud ones), silence around.
    let (channels, rate, wav) = read_wav(&out);
    assert_eq!((channels, rate), (2, SAMPLE_RATE));
    let left: Vec<i16> = wav.iter().step_by(2).copied().collect();
    let loud: Vec<usize> = left
        .chunks(FRAME_SAMPLES)
        .enumerate()
        .filter(|(_, block)| {
            let energy: f64 = block.iter().map(|&s| (s as f64).powi(2)).sum();
            (energy / block.len() as f64).sqrt() > 1000.0
        })
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (loud[0], *loud.last().unwrap());
    // 100 packets, the fade after the last, and one concealed frame for each packet that came
    // too late on a loaded machine (the jitter buffer then stretches the delay).
    let report_text = std::fs::read_to_string(&report).unwrap();
    let late: usize = report_text
        .lines()
        .find(|l| l.starts_with("summary "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("late=")))
        .and_then(|n| n.parse().ok())
        .expect("a summary with late=");
    // A stall of the loaded machine longer than the jitter buffer's patience ends the talkspurt
    // (its tail concealed, then faded) and the next packet starts a new one, a playout delay
    // later: each restart may add that delay as silence inside the tone.
    let restart_blocks: usize = report_text
        .lines()
        .filter(|l| l.starts_with("start "))
        .skip(1)
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("playout_us=")))
        .filter_map(|us| us.parse::<usize>().ok())
        .map(|us| us / 10_000 + 2)
        .sum();
    assert!(
        (98..=104 + 2 * late + restart_blocks).contains(&(last - first + 1)),
        "the tone lasts {} blocks of 10 ms ({late} late packets, {restart_blocks} blocks of restarts), loud {:?}\n{report_text}",
        last - first + 1,
        loud
    );
    assert!(
        loud.len() >= 98 + late,
        "gaps in the tone: {} loud blocks",
        loud.len()
    );
    assert_dominant(
        &left[(first + 2) * FRAME_SAMPLES..(last - 2) * FRAME_SAMPLES],
        440.0,
    );

    // The report: every packet's latency, the onset, the frame, the microphone, a summary.
    let report = std::fs::read_to_string(&report).unwrap();
    for line in report.lines().filter(|l| !l.starts_with("packet ")) {
        eprintln!("report: {line}");
    }
    let packets: Vec<i64> = report
        .lines()
        .filter(|l| l.starts_with("packet "))
        .map(|l| {
            let field = l
                .split(' ')
                .find_map(|f| f.strip_prefix("latency_us="))
                .unwrap();
            field.parse().unwrap()
        })
        .collect();
    assert!(packets.len() >= 98, "{report}");
    let mut sorted = packets.clone();
    sorted.sort_unstable();
    eprintln!(
        "session → sink latency on loopback: p50 {} µs, p99 {} µs",
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 99 / 100]
    );
    assert!(
        packets.iter().all(|&l| (0..1_000_000).contains(&l)),
        "{packets:?}"
    );
    for kind in [
        "wav-origin ",
        "frame seq=1 ",
        "start ",
        "onset ",
        "talkspurt ",
        "mic-open ",
        "mic-close ",
        "summary received=100 ",
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(kind)),
            "no {kind:?} line in\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usable_devices_hello_says_so_and_sound_is_ignored() {
    for flags in [
        &["--audio-device", "wayray-no-such-device"][..],
        &["--no-audio"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start();
        let mut args = vec!["--screen", "64x48", "--exit-after-frames", "1"];
        args.extend_from_slice(flags);
        let client = Running::spawn(wrclient(dir.path(), server.addr, &args));
        let mut appliance = server.accept().await;
        let hello = appliance.expect_hello().await;
        assert_eq!(hello.capabilities.audio, AudioCapabilities::default());
        appliance.welcome(W, H).await;
        appliance.open_display().await;
        appliance.send_datagram(
            Datagram::Playback(AudioPacket {
                seq: 0,
                time_us: now_us(),
                opus: vec![0xfc, 0xff, 0xfe],
            })
            .encode()
            .unwrap(),
        );
        appliance
            .send_control(&ServerControl::Microphone { open: true })
            .await;
        appliance
            .send_frame(key_frame(1, W, H, &test_pattern(W, H)))
            .await;
        // The appliance keeps working: the frame is shown and it exits as told.
        assert_eq!(
            appliance.next_control().await,
            Some(ClientControl::FrameAck { seq: 1 })
        );
        let output = client.wait().await;
        assert!(output.status.success(), "{}", stderr(&output));
        if flags[0] != "--no-audio" {
            let log = stderr(&output);
            assert_eq!(log.matches("no speaker").count(), 1, "{log}");
        }
    }
}

/// ALSA itself, through its `null` device (no sound card needed), under the system-call filter:
/// the speaker plays, the microphone opens on request (after the filter is on) and sends at
/// real-time pace, and closes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alsa_null_device_plays_and_records_under_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &["--screen", "64x48", "--audio-device", "null"],
    ));
    let mut appliance = server.accept().await;
    let hello = appliance.expect_hello().await;
    assert_eq!(
        hello.capabilities.audio,
        AudioCapabilities {
            speaker: true,
            microphone: true
        }
    );
    appliance.welcome(W, H).await;
    let mut encoder = opus::Encoder::new(
        SAMPLE_RATE,
        opus::Channels::Stereo,
        opus::Application::Audio,
    )
    .unwrap();
    for (seq, chunk) in tone(440.0, 0.3, 2)
        .chunks_exact(FRAME_SAMPLES * 2)
        .enumerate()
    {
        let packet = AudioPacket {
            seq: seq as u64,
            time_us: now_us(),
            opus: encoder.encode_vec(chunk, 1000).unwrap(),
        };
        appliance.send_datagram(Datagram::Playback(packet).encode().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    appliance
        .send_control(&ServerControl::Microphone { open: true })
        .await;
    appliance
        .next_datagram(STEP_TIMEOUT)
        .await
        .expect("a microphone packet");
    let started = std::time::Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_millis(500) {
        if appliance
            .next_datagram(Duration::from_millis(100))
            .await
            .is_some()
        {
            count += 1;
        }
    }
    // 50 in half a second; never a flood from a device without a clock.
    assert!((20..=70).contains(&count), "{count} packets in 500 ms");
    appliance
        .send_control(&ServerControl::Microphone { open: false })
        .await;
    while appliance
        .next_datagram(Duration::from_millis(300))
        .await
        .is_some()
    {}
    client.signal("TERM");
    let output = client.wait().await;
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("microphone closed"), "{log}");
}

/// Lost and reordered packets: each lost one is rebuilt from its successor's FEC or concealed,
/// so the tone in the WAV has no silent gap, and the report counts what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_and_reordered_packets_leave_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out.wav"), dir.path().join("audio.report"));
    let server = TestServer::start();

    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--screen",
            "64x48",
            "--audio-out-wav",
            out.to_str().unwrap(),
            "--audio-report",
            report.to_str().unwrap(),
        ],
    ));
    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    let mut encoder = opus::Encoder::new(
        SAMPLE_RATE,
        opus::Channels::Stereo,
        opus::Application::Audio,
    )
    .unwrap();
    encoder.set_inband_fec(true).unwrap();
    encoder.set_packet_loss_perc(10).unwrap();
    let start = now_us();
    let packets: Vec<AudioPacket> = tone(440.0, 1.0, 2)
        .chunks_exact(FRAME_SAMPLES * 2)
        .enumerate()
        .map(|(seq, chunk)| AudioPacket {
            seq: seq as u64,
            time_us: start + seq as u64 * 10_000,
            opus: encoder.encode_vec(chunk, 1000).unwrap(),
        })
        .collect();
    // 5 % loss, one burst of two; 30 and 31 swapped.
    let lost = |seq: u64| seq % 20 == 7 || seq == 60 || seq == 61;
    let mut order: Vec<usize> = (0..packets.len()).collect();
    order.swap(30, 31);
    for &i in &order {
        let packet = &packets[i];
        let due = packet.time_us.max(start + i as u64 * 10_000);
        tokio::time::sleep(Duration::from_micros(due.saturating_sub(now_us()))).await;
        if !lost(packet.seq) {
            appliance.send_datagram(Datagram::Playback(packet.clone()).encode().unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.signal("TERM");
    let output = client.wait().await;
    assert!(output.status.success(), "{}", stderr(&output));

    let (_, _, wav) = read_wav(&out);
    let left: Vec<i16> = wav.iter().step_by(2).copied().collect();
    // No silent 5 ms block (below −40 dBFS) from the tone's start to its end. Concealed
    // frames are quieter than the tone (Opus's CELT mode, which a pure tone at this bitrate
    // gets, carries no FEC and its PLC fades), but never silent.
    let block = FRAME_SAMPLES / 2;
    let rms: Vec<f64> = left
        .chunks(block)
        .map(|b| (b.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / b.len() as f64).sqrt())
        .collect();
    let first = rms
        .iter()
        .position(|&r| r > 3000.0)
        .expect("the tone played");
    let last = rms.iter().rposition(|&r| r > 3000.0).unwrap();
    let silent: Vec<usize> = (first..=last).filter(|&i| rms[i] < 330.0).collect();
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(
        silent.is_empty(),
        "silent 5 ms blocks inside the tone (first {first}): {silent:?}\n{report}"
    );
    assert!(
        // 200 blocks sent; a loaded machine may cost the edges a block or two.
        last - first + 1 >= 194,
        "{} blocks:\n{}",
        last - first + 1,
        report
            .lines()
            .filter(|l| !l.starts_with("packet "))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let summary = report
        .lines()
        .find(|l| l.starts_with("summary "))
        .expect("a summary");
    eprintln!("{summary}");
    let field = |name: &str| -> u64 {
        summary
            .split(' ')
            .find_map(|f| f.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(field("received="), 93, "{summary}");
    // Packets late on a loaded machine count as lost as well.
    let late = field("late=");
    assert_eq!(field("lost="), 7 + late, "{summary}");
    assert!(field("fec=") >= 6 - late.min(6), "{summary}");
}
