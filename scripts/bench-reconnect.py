#!/usr/bin/env python3
"""A known appliance's reconnect: a full TLS handshake against a resumed session with the Hello
as 0-RTT early data, over a link with RTT_MS of round trip (the netem relay, default 50 ms).

  python3 scripts/bench-reconnect.py BIN_DIR      (scripts/bench reconnect runs it on a release build)

Full: a fresh wrclient (a known, pinned server, but no TLS ticket: a new process) connects
through the relay, RUNS=N times (default 10). Resumed: one wrclient stays up and is made to
reconnect N times (another appliance connecting straight to the server takes the shared session
from it, and it reconnects at once), resuming its TLS session with a 0-RTT Hello. For each:
connect -> Welcome (the appliance's log), connect -> the server attaches the session (the
server's log, same clock), connect -> first frame shown (the appliance's log). Medians in ms.
The server attaches nothing before the handshake completes (replayed early data must move no
session), so the session is attached 1.5 RTT after connect at best either way. A full handshake's
Hello also carries the compiled keymap (tens of kilobytes, several round trips of slow start);
a 0-RTT Hello leaves it out and sends it on the input stream after the handshake, so part of the
difference is that, not the round trip 0-RTT itself saves on Welcome.
"""

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
RUNS = int(os.environ.get("RUNS", "10"))
RTT_MS = int(os.environ.get("RTT_MS", "50"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:(\d\d\.\d+))Z")


def lines(path):
    try:
        with open(path, errors="replace") as f:
            return [ANSI.sub("", l) for l in f]
    except FileNotFoundError:
        return []


def stamp(line):
    """Seconds since the epoch of a tracing line (UTC)."""
    m = STAMP.match(line)
    if not m:
        raise ValueError(f"no timestamp in {line!r}")
    whole = time.strptime(m.group(1).split(".")[0], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(whole) - time.timezone + float("0." + m.group(1).split(".")[1])


def wait(what, test, timeout=30):
    start = time.time()
    while not test():
        if time.time() - start > timeout:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def shown_after(log, attempt):
    """Whether the appliance showed a frame after it started connection attempt `attempt`."""
    ls = lines(log)
    starts = [k for k, l in enumerate(ls) if f"attempt={attempt}}}" in l and "connecting" in l]
    return bool(starts) and any("presented frame=" in l for l in ls[starts[0]:])


def read_value(path, key):
    for l in lines(path):
        if l.startswith(key + "="):
            return l.strip().split("=", 1)[1]
    return None


def main():
    work = tempfile.mkdtemp(prefix="wayray-bench-reconnect-")
    os.makedirs(f"{work}/run", mode=0o700)
    procs = []

    def start(name, args, env=None):
        p = subprocess.Popen(args, stdout=open(f"{work}/{name}.out", "w"),
                             stderr=open(f"{work}/{name}.log", "w"),
                             env=dict(os.environ, **(env or {})))
        procs.append(p)
        return p

    try:
        start("wrsrvd", [f"{BIN}/wrsrvd", "--listen", "127.0.0.1:0", "--api-listen", "off", "--appliance-auth", "open",
                         "--state-dir", f"{work}/state"],
              {"RUST_LOG": "info", "XDG_RUNTIME_DIR": f"{work}/run"})
        wait("wrsrvd", lambda: read_value(f"{work}/wrsrvd.out", "WAYRAY_LISTEN"))
        server = read_value(f"{work}/wrsrvd.out", "WAYRAY_LISTEN")
        start("netem", [f"{BIN}/examples/netem", "--to", server, "--delay-ms", str(RTT_MS // 2)])
        wait("netem", lambda: read_value(f"{work}/netem.out", "NETEM_LISTEN"))
        relay = read_value(f"{work}/netem.out", "NETEM_LISTEN")
        env = {"RUST_LOG": "info,wrclient::screen=debug"}

        def attached_after(t0):
            for l in lines(f"{work}/wrsrvd.log"):
                if "daemon: attached" in l and stamp(l) >= t0:
                    return stamp(l)
            return None

        def measure(log, attempt):
            """(connect->Welcome, connect->attach, connect->frame) in ms for one attempt."""
            ls = lines(log)
            tag = f"attempt={attempt}}}"
            conn = next(l for l in ls if tag in l and "connecting" in l)
            t0 = stamp(conn)
            welcome = stamp(next(l for l in ls if tag in l and "welcomed" in l))
            after = ls[ls.index(conn):]
            frame = stamp(next(l for l in after if "presented frame=" in l))
            attach = attached_after(t0)
            return ((welcome - t0) * 1000, (attach - t0) * 1000, (frame - t0) * 1000)

        # Full handshakes: a new process each time (the first run pins the certificate).
        full = []
        for i in range(RUNS + 1):
            p = start(f"full{i}", [f"{BIN}/wrclient", "--server", relay, "--state-dir", f"{work}/full",
                                   "--exit-after-frames", "1", "--exit-after", "20"], env)
            p.wait()
            if i > 0:
                full.append(measure(f"{work}/full{i}.log", 1))

        # Resumed with 0-RTT: one appliance, made to reconnect.
        a = start("resumed", [f"{BIN}/wrclient", "--server", relay, "--state-dir", f"{work}/full",
                              "--exit-after", "600"], env)
        wait("the appliance", lambda: any("presented frame=" in l for l in lines(f"{work}/resumed.log")))
        resumed = []
        for i in range(RUNS):
            start(f"taker{i}", [f"{BIN}/wrclient", "--server", server, "--state-dir", f"{work}/taker",
                                "--exit-after-frames", "1", "--exit-after", "20"]).wait()
            attempt = i + 2
            wait(f"reconnect {attempt}", lambda: shown_after(f"{work}/resumed.log", attempt))
            if not any(f"attempt={attempt}}}" in l and "early_data_accepted=true" in l
                       for l in lines(f"{work}/resumed.log")):
                sys.exit(f"reconnect {attempt} did not resume with 0-RTT; see {work}/resumed.log")
            resumed.append(measure(f"{work}/resumed.log", attempt))
            time.sleep(0.3)
        a.send_signal(signal.SIGTERM)
        a.wait()

        print(f"\n### A known appliance's reconnect ({RUNS} runs each, {RTT_MS} ms RTT through netem)\n")
        print("| | connect → Welcome ms | connect → session attached ms | connect → first frame ms |")
        print("|---|--:|--:|--:|")
        for name, rows in [("full handshake (new process, pinned server)", full),
                           ("resumed TLS session, Hello as 0-RTT data", resumed)]:
            med = [statistics.median(r[k] for r in rows) for k in range(3)]
            print(f"| {name} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} |")
        print(f"\nlogs: {work}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
