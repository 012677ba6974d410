#!/usr/bin/env python3
"""A pool of servers (called by `scripts/bench pool`; needs root, a release build, etcd-server).

Real parts: a three-member etcd cluster on loopback, three `wrsrvd --launcher --pool` with their
own `wrsessd` (greeters as `nobody`), `wrclient` appliances presenting fixed tokens (`--token`;
the servers accept tokens that prove nothing with `unproven_cards = "lock"`). It reports

  card-in      an appliance presenting a token whose session (its greeter) runs on server S:
               process start -> first frame presented, connecting to S itself ("same server")
               against connecting to another server that redirects it to S ("redirected"),
               interleaved, RUNS=N each (default 10); medians and their ratio
  failover     kill -9 of the server an appliance shows a session from -> a frame from a
               greeter on another server on that appliance (QUIC idle timeout, lease expiry,
               greeter start included), FAILOVERS=N times (default 3; the server restarts between)
  placement    LOGINS=N new tokens (default 300), CONCURRENT at a time (default 10), all at
               server pa: how many sessions each server got
  etcd writes  puts + deletes + transactions etcd applied during the placement run (its own
               /metrics), per new token; and per server per minute while idle (load updates)
"""

import os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
RUNS = int(os.environ.get("RUNS", "10"))
FAILOVERS = int(os.environ.get("FAILOVERS", "3"))
LOGINS = int(os.environ.get("LOGINS", "300"))
CONCURRENT = int(os.environ.get("CONCURRENT", "10"))
TTL = 3
NAMES = ["pa", "pb", "pc"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
procs = []
work = tempfile.mkdtemp(prefix="wayray-bench-pool-")
# Greeters run as nobody and must reach their server's run directory inside it.
os.chmod(work, 0o755)


def spawn(args, log=None, pipe=False, env=None):
    e = dict(os.environ, RUST_LOG="info")
    e.update(env or {})
    p = subprocess.Popen(args, stdout=subprocess.PIPE if pipe else subprocess.DEVNULL,
                         stderr=open(log, "a") if log else subprocess.DEVNULL, env=e, text=True)
    procs.append(p)
    return p


def wait(what, cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise SystemExit(f"bench-pool: timed out waiting for {what} (logs in {work})")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return ANSI.sub("", f.read())
    except FileNotFoundError:
        return ""


# --- etcd ------------------------------------------------------------------------------------
def member_args(i):
    peers = ",".join(f"m{j}=http://127.0.0.1:{23001 + 2 * j}" for j in range(3))
    return ["etcd", "--name", f"m{i}", "--data-dir", f"{work}/etcd-m{i}",
            "--listen-client-urls", f"http://127.0.0.1:{23000 + 2 * i}",
            "--advertise-client-urls", f"http://127.0.0.1:{23000 + 2 * i}",
            "--listen-peer-urls", f"http://127.0.0.1:{23001 + 2 * i}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{23001 + 2 * i}",
            "--initial-cluster", peers, "--initial-cluster-state", "new"]


ENDPOINTS = ",".join(f"http://127.0.0.1:{23000 + 2 * i}" for i in range(3))


def etcd_writes():
    """Puts, deletes and transactions member 0 applied since it started."""
    text = urllib.request.urlopen("http://127.0.0.1:23000/metrics", timeout=5).read().decode()
    total = 0.0
    for name in ("etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        total += float(m.group(1)) if m else 0.0
    return total


# --- servers ---------------------------------------------------------------------------------
servers = {}


def start_server(name):
    d = f"{work}/{name}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/wrsrvd.toml", "w") as f:
        f.write(f'unproven_cards = "lock"\nsuspended_timeout_secs = 20\n'
                f"[pool]\nlease_ttl_secs = {TTL}\n")
    p = spawn([f"{BIN}/wrsrvd", "-c", f"{d}/wrsrvd.toml", "--listen", "127.0.0.1:0",
               "--state-dir", f"{d}/state", "--run-dir", f"{d}/run", "--launcher",
               "--appliance-auth", "open", "--api-listen", "127.0.0.1:0",
               "--pool", ENDPOINTS, "--pool-name", name],
              log=f"{d}/wrsrvd.log", pipe=True, env={"XDG_RUNTIME_DIR": f"{d}/xdg"})
    os.makedirs(f"{d}/xdg", mode=0o700, exist_ok=True)
    listen = None
    while listen is None:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"bench-pool: wrsrvd {name} exited:\n{read(d + '/wrsrvd.log')}")
        if line.startswith("WAYRAY_LISTEN="):
            listen = line.strip().split("=", 1)[1]
    sessd = spawn([f"{BIN}/wrsessd", "--run-dir", f"{d}/run", "--greeter-user", "nobody"],
                  log=f"{d}/wrsessd.log")
    servers[name] = {"proc": p, "sessd": sessd, "listen": listen, "dir": d}
    wait(f"{name} in the pool", lambda: "in the pool" in read(f"{d}/wrsrvd.log"), 30)


def stop_server(name, sig=signal.SIGKILL):
    s = servers.pop(name)
    for p in (s["proc"], s["sessd"]):
        try:
            p.send_signal(sig)
            p.wait(timeout=10)
        except Exception:
            pass


def greeters(name):
    return read(f"{servers[name]['dir']}/wrsrvd.log").count("starting a greeter")


def holder(token):
    """The server whose log started a greeter for `token` last (the session's server)."""
    for name, s in servers.items():
        if re.search(rf'starting a greeter token={re.escape(token)}\b|starting a greeter token="{re.escape(token)}"',
                     read(f"{s['dir']}/wrsrvd.log")):
            return name
    return None


# --- appliances ------------------------------------------------------------------------------
def appliance(name, server, token, frames=1, extra=()):
    d = f"{work}/appl-{name}"
    os.makedirs(d, exist_ok=True)
    args = [f"{BIN}/wrclient", "--server", servers[server]["listen"], "--state-dir", d,
            "--screen", "800x600", "--token", token, "--frame-log", f"{d}/frames.log",
            *extra]
    if frames:
        args += ["--exit-after-frames", str(frames)]
    return spawn(args, log=f"{d}/wrclient.log")


def time_to_first_frame(name, server, token):
    start = time.monotonic()
    p = appliance(name, server, token)
    p.wait(timeout=60)
    return time.monotonic() - start


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench-pool: needs root (wrsessd starts greeters as nobody)")
    for i in range(3):
        spawn(member_args(i), log=f"{work}/etcd-m{i}.log")
    time.sleep(2)
    for name in NAMES:
        start_server(name)
    wait("three servers registered", lambda: all(read(f"{s['dir']}/wrsrvd.log").count("in the pool") for s in servers.values()))

    # --- card-in: same server against redirected --------------------------------------------
    token = "bench.card"
    time_to_first_frame("first", "pa", token)
    home = holder(token)
    other = next(n for n in NAMES if n != home)
    same, redirected = [], []
    for i in range(RUNS):
        same.append(time_to_first_frame(f"same{i}", home, token))
        redirected.append(time_to_first_frame(f"redir{i}", other, token))
    ms = lambda xs: statistics.median(xs) * 1000
    print(f"\n### Card-in → first frame (median of {RUNS}, process start included)\n")
    print("| path | median ms | min ms | max ms |\n|---|--:|--:|--:|")
    print(f"| same server ({home}) | {ms(same):.0f} | {min(same)*1000:.0f} | {max(same)*1000:.0f} |")
    print(f"| redirected ({other} → {home}) | {ms(redirected):.0f} | {min(redirected)*1000:.0f} | {max(redirected)*1000:.0f} |")
    print(f"\nredirected / same: {statistics.median(redirected) / statistics.median(same):.2f}×")

    # --- failover ----------------------------------------------------------------------------
    times = []
    for i in range(FAILOVERS):
        tok = f"bench.fail{i}"
        start_from = NAMES[i % 3]
        p = appliance(f"fail{i}", start_from, tok, frames=0)
        frames_log = f"{work}/appl-fail{i}/frames.log"
        wait("the failover appliance's first frame", lambda: read(frames_log).strip() != "")
        victim = holder(tok)
        n_before = len(read(frames_log).splitlines())
        before_greeters = {n: greeters(n) for n in servers if n != victim}
        t0 = time.monotonic()
        stop_server(victim)
        wait("a greeter elsewhere", lambda: any(greeters(n) > before_greeters[n] for n in before_greeters), 60)
        wait("its frame on the appliance", lambda: len(read(frames_log).splitlines()) > n_before, 60)
        times.append(time.monotonic() - t0)
        p.terminate()
        start_server(victim)
        time.sleep(1)
    print(f"\n### Server killed → its appliance shows a greeter on another server (lease TTL {TTL} s, QUIC idle timeout 5 s)\n")
    print("| runs | median s | min s | max s |\n|--:|--:|--:|--:|")
    print(f"| {len(times)} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")

    # --- placement and etcd writes --------------------------------------------------------
    idle0, t_idle = etcd_writes(), time.monotonic()
    time.sleep(30)
    idle_rate = (etcd_writes() - idle0) / (time.monotonic() - t_idle) * 60 / len(servers)
    before = {n: greeters(n) for n in servers}
    w0 = etcd_writes()
    running = []
    for i in range(LOGINS):
        while len(running) >= CONCURRENT:
            running = [p for p in running if p.poll() is None]
            time.sleep(0.05)
        running.append(appliance(f"login{i}", "pa", f"bench.login{i:04}"))
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{LOGINS} logins", file=sys.stderr)
    for p in running:
        p.wait(timeout=120)
    # Their greeters end 20 s after their appliances left: the releases count too.
    time.sleep(30)
    writes = etcd_writes() - w0
    placed = {n: greeters(n) - before[n] for n in servers}
    print(f"\n### Placement of {LOGINS} new tokens, all presented at pa, {CONCURRENT} at a time\n")
    print("| server | sessions placed | share |\n|---|--:|--:|")
    for n in NAMES:
        print(f"| {n} | {placed[n]} | {placed[n] / max(1, LOGINS):.0%} |")
    print(f"\n### etcd writes\n")
    print("| what | writes |\n|---|--:|")
    print(f"| per new token (claim, release when its greeter ended, load updates meanwhile) | {writes / LOGINS:.2f} |")
    print(f"| per server per minute while idle (load updates) | {idle_rate:.1f} |")


try:
    main()
finally:
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass
    print(f"(logs: {work})", file=sys.stderr)
