#!/usr/bin/env python3
"""Audio figures: end-to-end latency, audio-video offset, bytes and CPU per stream.

  python3 scripts/bench-audio.py BIN_DIR      (scripts/bench audio runs it on a release build)

One wrsrvd (shared session, its own PipeWire) and headless wrclients whose audio backend plays
into a WAV at the pace of a sound card (`--audio-out-wav`) and reports every packet
(`--audio-report`). Server, session and appliance share this host's CLOCK_MONOTONIC, so the
report's `latency_us` is the real time from the session writing a sample (its PipeWire process
callback) to the appliance handing it to the sink. Each case goes through the netem relay
(appliance/examples/netem.rs), which also counts the bytes on the wire:

  loopback   no delay
  rtt20      20 ms round trip (10 ms each way)

In each case: IDLE seconds with nothing playing (bytes and CPU of silence), then PLAY seconds of
a 440 Hz tone through pw-play (latency percentiles over its packets, bytes/s, CPU). CPU per
stream is the CPU time the processes used while playing minus while idle, as % of one core:
the server side is the session compositor (Opus encoding, the audio thread) plus the session's
pipewire daemon; the appliance side is wrclient (receiving, Opus decoding, jitter buffer, the
WAV sink). pw-play's own CPU is the application's, not ours, and is left out.

The audio-video offset: examples/av_probe in the session flashes white and starts a beep in the
same instant, COUNT=10 times; for each, the appliance's report gives when the first frame
rendered after the flash was presented and when the beep's first sample was heard (handed to
the sink plus what the sink had queued). Offset = heard - presented: positive when the sound
comes late. The ITU-R BT.1359 detectability window is -125/+45 ms.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
IDLE = float(os.environ.get("IDLE", "8"))
PLAY = float(os.environ.get("PLAY", "10"))
COUNT = int(os.environ.get("COUNT", "10"))
HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait(what, test, timeout=60):
    start = time.time()
    while not test():
        if time.time() - start > timeout:
            sys.exit(f"bench-audio: timed out waiting for {what}")
        time.sleep(0.05)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def value(path, key):
    m = re.search(rf"^{key}=(.*)$", read(path), re.M)
    return m.group(1).strip() if m else None


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except FileNotFoundError:
        return []


def named(pids, names):
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in names:
                    found.append(pid)
        except FileNotFoundError:
            pass
    return found


def report(path):
    """The appliance's --audio-report: a list of (kind, {key: int or str})."""
    lines = []
    for line in read(path).splitlines():
        kind, *pairs = line.split()
        fields = {}
        for pair in pairs:
            k, _, v = pair.partition("=")
            try:
                fields[k] = int(v)
            except ValueError:
                fields[k] = v
        lines.append((kind, fields))
    return lines


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    i = min(len(values) - 1, max(0, int(round(p * len(values) + 0.5)) - 1))
    return values[i]


class Bench:
    def __init__(self, work):
        self.work = work
        self.procs = []
        self.env = dict(os.environ, XDG_RUNTIME_DIR=f"{work}/run", RUST_LOG="info")
        os.makedirs(f"{work}/run", mode=0o700, exist_ok=True)

    def start(self, name, argv, env=None):
        out = open(f"{self.work}/{name}.out", "w")
        err = open(f"{self.work}/{name}.log", "w")
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env or self.env)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for p in reversed(self.procs):
            self.stop(p)

    def session(self, program, args, **kw):
        env = dict(self.env, WAYLAND_DISPLAY=self.wayland, PIPEWIRE_RUNTIME_DIR=self.audio_dir,
                   PULSE_SERVER=f"unix:{self.audio_dir}/pulse/native")
        return subprocess.run([program, *args], env=env, capture_output=True, text=True, **kw)

    def server(self):
        self.wrsrvd = self.start("wrsrvd", [f"{BIN}/wrsrvd", "--listen", "127.0.0.1:0", "--api-listen", "off",
                                            "--appliance-auth", "open",
                                            "--state-dir", f"{self.work}/state"])
        wait("wrsrvd", lambda: value(f"{self.work}/wrsrvd.out", "WAYLAND_DISPLAY"))
        self.listen = value(f"{self.work}/wrsrvd.out", "WAYRAY_LISTEN")
        self.wayland = value(f"{self.work}/wrsrvd.out", "WAYLAND_DISPLAY")
        # The session's own sound server (its clients get these variables from the session).
        dirs = lambda: re.findall(r"audio service started.* dir=(\S+)",
                                  re.sub(r"\x1b\[[0-9;]*m", "", read(f"{self.work}/wrsrvd.log")))
        wait("the session's audio server", dirs)
        self.audio_dir = dirs()[0]
        wait("the session's WayRay sink",
             lambda: "wayray" in self.session("pactl", ["get-default-sink"]).stdout)
        # The session compositor (`wrsrvd session`, started through the daemon's spawner) and
        # the session's pipewire daemon, wherever they sit below wrsrvd.
        below = descendants(self.wrsrvd.pid)
        session = [p for p in below if b"session" in cmdline(p)[1:2]]
        if not session:
            sys.exit("bench-audio: no session compositor under wrsrvd")
        self.session_pid = session[0]
        self.pipewire = named(below, {"pipewire"})

    def appliance(self, name, rtt_ms):
        relay = self.start(f"{name}-netem", [f"{BIN}/examples/netem", "--to", self.listen,
                                             "--delay-ms", str(rtt_ms // 2),
                                             "--stats", f"{self.work}/{name}-netem.json",
                                             "--stats-interval-ms", "100"])
        wait("netem", lambda: value(f"{self.work}/{name}-netem.out", "NETEM_LISTEN"))
        attached = read(f"{self.work}/wrsrvd.log").count("appliance attached")
        app = self.start(name, [f"{BIN}/wrclient", "--server",
                                value(f"{self.work}/{name}-netem.out", "NETEM_LISTEN"),
                                "--state-dir", f"{self.work}/{name}-state",
                                "--audio-out-wav", f"{self.work}/{name}.wav",
                                "--audio-report", f"{self.work}/{name}-audio.log",
                                "--exit-after", "600"])
        wait("the appliance to attach",
             lambda: read(f"{self.work}/wrsrvd.log").count("appliance attached") > attached)
        time.sleep(1.0)
        return relay, app

    def window(self, app, name, seconds, action=None):
        """CPU seconds (server, appliance) and wire bytes down over `seconds`."""
        stats = f"{self.work}/{name}-netem.json"

        def down():
            try:
                return json.loads(read(stats))["down"]["bytes"]
            except (ValueError, KeyError):
                return 0
        server = [self.session_pid, *self.pipewire]
        s0, a0, b0, t0 = cpu_seconds(server), cpu_seconds([app.pid]), down(), time.time()
        if action:
            action()
        else:
            time.sleep(seconds)
        time.sleep(0.3)
        s1, a1, b1, t1 = cpu_seconds(server), cpu_seconds([app.pid]), down(), time.time()
        span = t1 - t0
        return {"server_cpu": (s1 - s0) / span, "appliance_cpu": (a1 - a0) / span,
                "bytes_per_s": (b1 - b0) / span}

    def case(self, name, rtt_ms, tone):
        relay, app = self.appliance(name, rtt_ms)
        idle = self.window(app, name, IDLE)
        play = self.window(app, name, PLAY,
                           lambda: self.session("pw-play", [tone], timeout=PLAY + 30))
        self.stop(app)
        self.stop(relay)
        lines = report(f"{self.work}/{name}-audio.log")
        latency = [f["latency_us"] / 1000 for k, f in lines if k == "packet" and "latency_us" in f]
        summary = next((f for k, f in reversed(lines) if k == "summary"), {})
        return {"idle": idle, "play": play, "latency": latency, "summary": summary}

    def av(self):
        relay, app = self.appliance("av", 0)
        probe = self.session(f"{BIN}/examples/av_probe", [str(COUNT)], timeout=COUNT * 3 + 60)
        time.sleep(1.0)
        self.stop(app)
        self.stop(relay)
        flashes = {int(m.group(1)): int(m.group(2))
                   for m in re.finditer(r"flash n=(\d+) commit_us=(\d+)", probe.stdout)}
        beeps = {int(m.group(1)): int(m.group(2))
                 for m in re.finditer(r"beep n=(\d+) written_us=(\d+)", probe.stdout)}
        lines = report(f"{self.work}/av-audio.log")
        frames = [f for k, f in lines if k == "frame"]
        onsets = [f for k, f in lines if k == "onset"]
        offsets = []
        for n, commit in sorted(flashes.items()):
            frame = next((f for f in frames if f["time_us"] >= commit), None)
            written = beeps.get(n, commit)
            onset = next((o for o in onsets if o["time_us"] >= written - 20_000), None)
            if frame and onset:
                offsets.append((onset["heard_us"] - frame["presented_us"]) / 1000)
        if probe.returncode != 0:
            print(f"av_probe failed: {probe.stderr}", file=sys.stderr)
        return offsets


def main():
    work = tempfile.mkdtemp(prefix="wayray-bench-audio-")
    b = Bench(work)
    try:
        tone = f"{work}/tone.wav"
        subprocess.run(["sox", "-n", "-r", "48000", "-c", "2", tone, "synth", str(PLAY - 1),
                        "sine", "440", "gain", "-6"], check=True)
        b.server()
        cases = {"loopback": b.case("loopback", 0, tone), "20 ms RTT": b.case("rtt20", 20, tone)}
        offsets = b.av()
    finally:
        b.close()

    print(f"\n### Audio: a {PLAY - 1:.0f} s 440 Hz tone from pw-play in the session to the appliance's sink\n")
    print("| link | packets | latency p50 ms | p99 ms | lost | FEC | concealed | late |"
          " bytes/s playing | bytes/s silent | server CPU % | appliance CPU % |")
    print("|--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, c in cases.items():
        s = c["summary"]
        server = (c["play"]["server_cpu"] - c["idle"]["server_cpu"]) * 100
        appliance = (c["play"]["appliance_cpu"] - c["idle"]["appliance_cpu"]) * 100
        print(f"| {name} | {len(c['latency'])} | {pct(c['latency'], 0.5):.1f} |"
              f" {pct(c['latency'], 0.99):.1f} | {s.get('lost', '?')} | {s.get('fec', '?')} |"
              f" {s.get('concealed', '?')} | {s.get('late', '?')} |"
              f" {c['play']['bytes_per_s']:.0f} | {c['idle']['bytes_per_s']:.0f} |"
              f" {server:.1f} | {appliance:.1f} |")
    print(f"\nAudio-video offset (sound heard - frame shown, {len(offsets)} of {COUNT} flashes"
          " matched; + means the sound is late):")
    if offsets:
        print(f"median {statistics.median(offsets):+.1f} ms, min {min(offsets):+.1f},"
              f" max {max(offsets):+.1f} (BT.1359 detectability: -125 / +45 ms)")
    print(f"\n(work dir: {work})")


if __name__ == "__main__":
    main()
