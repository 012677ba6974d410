#!/usr/bin/env python3
"""Hot-desking benchmark (called by `scripts/bench reattach`; needs root, a release build,
pcscd with vsmartcard-vpcd, /etc/pam.d/wayray).

Real parts only: wrsrvd --launcher, wrsessd + PAM, wrlogin, a test user's session running foot,
two wrclient appliances on the two vpcd readers, our virtual card. After one login the card moves
between the readers N times (CARDS=N, default 50); for each move it reports

  re-attach:  the new appliance sends TokenChanged -> first frame of the session presented
              (appliance-side timestamps, one process: pcscd's card detection is left out)
  card-in:    the card connects to the reader -> that frame (pcscd detection included)

then a QUIC reconnect of a known appliance (a fresh wrclient with the card already in:
process start -> first frame, RECONNECTS=N, default 20), and the memory of the suspended
session (its compositor plus its clients).
"""

import json, os, re, signal, statistics, subprocess, sys, tempfile, time
from datetime import datetime

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
CARDS = int(os.environ.get("CARDS", "50"))
RECONNECTS = int(os.environ.get("RECONNECTS", "20"))
ATR = "3B8F8001804F0CA000000306030001000000006A"
READERS = [("Virtual PCD 00 00", "35963"), ("Virtual PCD 00 01", "35964")]
USER, PASSWORD = "wrbench", "bench-pw-1"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

procs = []


def spawn(args, log, env=None, pipe=False):
    e = dict(os.environ, RUST_LOG="info,wrclient::screen=debug")
    e.update(env or {})
    p = subprocess.Popen(args, stdout=subprocess.PIPE if pipe else subprocess.DEVNULL,
                         stderr=open(log, "w") if log else subprocess.DEVNULL, env=e, text=True)
    procs.append(p)
    return p


def lines(path):
    try:
        with open(path, errors="replace") as f:
            return [ANSI.sub("", l) for l in f]
    except FileNotFoundError:
        return []


def stamp(line):
    m = STAMP.match(line)
    return datetime.fromisoformat(m.group(1)).timestamp() if m else None


def wait(what, cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise SystemExit(f"bench-reattach: timed out waiting for {what}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kb(pid):
    total = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            total = int(line.split()[1])
    return total


def tree(pid):
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    kids = {}
    for l in out.splitlines():
        a, b = map(int, l.split())
        kids.setdefault(b, []).append(a)
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, []))
    return seen


def main():
    work = tempfile.mkdtemp(prefix="wayray-bench-reattach-")
    run = os.path.join(work, "run")
    os.makedirs(run)
    os.chmod(work, 0o755)
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n", text=True, check=True)
    try:
        # The figure is the card move itself: a PIV card proves its key, so no lock screen comes
        # in between under the default re-attach policy.
        server = spawn([f"{BIN}/wrsrvd", "--launcher", "--listen", "127.0.0.1:0", "--api-listen", "off", "--appliance-auth", "open", "--state-dir",
                        f"{work}/state", "--run-dir", run], f"{work}/wrsrvd.log",
                       {"RUST_LOG": "info", "XDG_RUNTIME_DIR": work}, pipe=True)
        listen = None
        while listen is None:
            l = server.stdout.readline()
            if not l:
                raise SystemExit("bench-reattach: wrsrvd exited")
            if l.startswith("WAYRAY_LISTEN="):
                listen = l.strip().split("=", 1)[1]
        spawn([f"{BIN}/wrsessd", "--run-dir", run, "--greeter-user", "nobody"], f"{work}/wrsessd.log")
        login = f"{work}/login.script"
        with open(login, "w") as f:
            f.write(f"wait 2500\ntype {USER}\nkey tab\ntype {PASSWORD}\nkey enter\n")
        idle = f"{work}/idle.script"
        with open(idle, "w") as f:
            f.write("wait 86400000\n")

        def appliance(name, reader, script):
            return spawn([f"{BIN}/wrclient", "--server", listen, "--state-dir", f"{work}/{name}-state",
                          "--display", "headless", "--screen", "1280x800", "--card-reader", reader,
                          "--require-card", "--input-script", script], f"{work}/{name}.log")

        def card(port):
            # A PIV card: each re-attach includes its proof (GENERAL AUTHENTICATE), as a real one.
            return spawn([f"{BIN}/examples/vcard", "--port", port, "--atr", ATR, "--uid", "04A1B2C3",
                          "--piv-key", f"{work}/card.key"], "")

        logs = [f"{work}/a.log", f"{work}/b.log"]
        appliance("a", READERS[0][0], login)
        appliance("b", READERS[1][0], idle)
        c = card(READERS[0][1])
        sessions = os.path.join(run, "sessions")
        def logged_in():
            if not any("starting the user's session" in l for l in lines(f"{work}/wrsrvd.log")):
                return False
            names = os.listdir(sessions) if os.path.isdir(sessions) else []
            # The greeter's window and foot in the user's session.
            return sum("mapping toplevel" in "".join(lines(os.path.join(sessions, n))) for n in names) >= 2

        wait("the user's session with foot", logged_in, 60)
        time.sleep(2)

        reattach, card_in = [], []
        at = 0
        for i in range(CARDS):
            c.send_signal(signal.SIGTERM)
            c.wait()
            at ^= 1
            log = logs[at]
            before = len(lines(log))
            t0 = time.time()
            c = card(READERS[at][1])

            def shown():
                new = lines(log)[before:]
                tok = next((k for k, l in enumerate(new) if "presenting a new token" in l and "Some" in l), None)
                if tok is None:
                    return False
                return any("presented frame=" in l for l in new[tok:])

            wait(f"card move {i}", shown, 20)
            new = lines(log)[before:]
            tok = next(k for k, l in enumerate(new) if "presenting a new token" in l and "Some" in l)
            frame = next(l for l in new[tok:] if "presented frame=" in l)
            reattach.append((stamp(frame) - stamp(new[tok])) * 1000)
            card_in.append((stamp(frame) - t0) * 1000)
            time.sleep(0.3)

        # QUIC reconnect of a known appliance: a fresh wrclient at the reader with the card in.
        reconnect = []
        for i in range(RECONNECTS):
            name = f"r{i}"
            t0 = time.time()
            p = appliance(name, READERS[at][0], idle)
            wait(f"reconnect {i}", lambda: any("presented frame=" in l for l in lines(f"{work}/{name}.log")), 20)
            l = next(l for l in lines(f"{work}/{name}.log") if "presented frame=" in l)
            reconnect.append((stamp(l) - t0) * 1000)
            p.send_signal(signal.SIGTERM)
            p.wait()

        # Card out: the session is suspended; measure it.
        c.send_signal(signal.SIGTERM)
        c.wait()
        time.sleep(2)
        out = subprocess.run([f"{BIN}/wradm", "--socket", f"{run}/admin.sock", "sessions", "--json"],
                             capture_output=True, text=True, check=True).stdout
        user = [s for s in json.loads(out) if s["kind"] == "user"]
        rss = None
        if user and user[0].get("pid"):
            pids = tree(int(user[0]["pid"]))
            rss = sum(rss_kb(p) for p in pids)
            compositor = rss_kb(int(user[0]["pid"]))
            state = user[0]["state"]
        daemon_rss = rss_kb(server.pid)

        print(f"\n### Hot-desking ({CARDS} card moves, {RECONNECTS} reconnects; loopback, release build)\n")
        print("| measure | n | p50 ms | p95 ms | max ms |")
        print("|---|--:|--:|--:|--:|")
        for name, xs in [("re-attach: TokenChanged sent → session frame presented", reattach),
                         ("card-in: card in the reader → frame presented (incl. pcscd)", card_in),
                         ("reconnect: wrclient start → first frame (QUIC 1-RTT)", reconnect)]:
            print(f"| {name} | {len(xs)} | {pct(xs, 50):.1f} | {pct(xs, 95):.1f} | {max(xs):.1f} |")
        if rss is not None:
            print(f"\nsuspended user session ({state}): {compositor / 1024:.1f} MiB RSS for its compositor "
                  f"(wrsrvd session), {rss / 1024:.1f} MiB with its clients ({len(pids)} processes); "
                  f"daemon {daemon_rss / 1024:.1f} MiB")
            print(f"24 GiB holds about {int(24 * 1024 * 1024 / rss)} such sessions by RSS")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        time.sleep(1)
        for p in procs:
            if p.poll() is None:
                p.kill()
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        subprocess.run(["userdel", "-r", USER], capture_output=True)
        if not os.environ.get("WAYRAY_KEEP_TMP"):
            subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
