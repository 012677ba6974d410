#!/usr/bin/env python3
"""The default desktop's costs (called by `scripts/bench desktop` after a release build):

  start    session start to the panel on screen: from starting `wrsrvd --desktop` (foot as the
           user's client) until the session sends the first frame that shows waybar's layer
           surface to the appliance, which connects as soon as the server listens (median of
           RUNS runs, default 3)
  idle     an idle default desktop (the panel's clock ticks once a minute) for SECONDS (default
           60): CPU seconds of the server side (daemon, session compositor, the desktop's clients)
           and of the appliance, and bytes both ways through the counting relay
           (appliance/examples/netem.rs), per minute
  memory   proportional set size (PSS, /proc/PID/smaps_rollup) of every server-side process of
           that idle session, per program

Usage: bench-desktop.py BIN_DIR [--runs N] [--seconds S]
"""

import argparse, datetime, os, re, signal, statistics, subprocess, sys, tempfile, time

CLK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return ANSI.sub("", f.read())
    except OSError:
        return ""


def wait_for(what, cond, timeout, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"bench-desktop: {p.args[0]} exited while waiting for {what}")
        time.sleep(0.05)
    raise SystemExit(f"bench-desktop: timed out waiting for {what}")


def proc_table():
    """pid -> (ppid, cpu seconds incl. reaped children, program name)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        name = s[s.index("(") + 1:s.rindex(")")]
        if len(argv) > 1 and argv[1] == b"session":
            name += " session"
        table[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK, name)
    return table


def tree(root, table):
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def cpu(root):
    table = proc_table()
    return sum(table[p][1] for p in tree(root, table))


def pss_kib(pid):
    m = re.search(r"^Pss:\s+(\d+) kB", read(f"/proc/{pid}/smaps_rollup"), re.M)
    return int(m.group(1)) if m else 0


def relay_bytes(stats):
    import json
    for _ in range(50):
        try:
            with open(stats) as f:
                s = json.load(f)
            return s["up"]["bytes"] + s["down"]["bytes"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    raise SystemExit(f"bench-desktop: cannot read relay stats {stats}")


def log_time(line):
    stamp = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()


class Run:
    """wrsrvd --desktop with foot, a counting relay, and a headless appliance behind it."""

    def __init__(self, bins, work, tag):
        self.dir = os.path.join(work, tag)
        xdg = os.path.join(self.dir, "xdg")
        os.makedirs(xdg, mode=0o700)
        self.log, out = os.path.join(self.dir, "wrsrvd.log"), os.path.join(self.dir, "wrsrvd.out")
        env = dict(os.environ, XDG_RUNTIME_DIR=xdg, RUST_LOG="info")
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.procs = []
        self.t0 = time.time()
        self.server = self.start([f"{bins}/wrsrvd", "--listen", "127.0.0.1:0", "--api-listen", "off", "--appliance-auth", "open", "--state-dir",
                                  os.path.join(self.dir, "state"), "--run-dir",
                                  os.path.join(xdg, "wayray"), "--desktop", "--size", "1280x800",
                                  "--spawn", "foot"], env, out, self.log)
        listen = wait_for("WAYRAY_LISTEN", lambda: re.search(r"WAYRAY_LISTEN=(\S+)", read(out)), 30,
                          [self.server]).group(1)
        self.stats = os.path.join(self.dir, "relay.json")
        rout = os.path.join(self.dir, "relay.out")
        relay = self.start([f"{bins}/examples/netem", "--to", listen, "--stats", self.stats,
                            "--stats-interval-ms", "50"], env, rout, os.path.join(self.dir, "relay.log"))
        addr = wait_for("the relay", lambda: re.search(r"NETEM_LISTEN=(\S+)", read(rout)), 10,
                        [relay]).group(1)
        self.client = self.start([f"{bins}/wrclient", "--server", addr, "--state-dir",
                                  os.path.join(self.dir, "appliance"), "--display", "headless",
                                  "--screen", "1280x800"], env, os.devnull,
                                 os.path.join(self.dir, "wrclient.log"))

    def start(self, argv, env, out, log):
        p = subprocess.Popen(argv, env=env, stdout=open(out, "w"), stderr=open(log, "w"),
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def panel_on_screen(self):
        for line in read(self.log).splitlines():
            if "layer surface on screen" in line and 'namespace="waybar"' in line:
                return log_time(line) - self.t0
        return None

    def stop(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", 3)))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SECONDS_IDLE", 60)))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wayray-bench-desktop-")
    starts, idle = [], None
    for i in range(args.runs):
        run = Run(args.bins, work, f"run{i}")
        try:
            t = wait_for("the panel on screen", run.panel_on_screen, 60, [run.server, run.client])
            starts.append(t)
            print(f"run {i + 1}/{args.runs}: panel on screen {t * 1000:.0f} ms after start",
                  file=sys.stderr)
            if i == args.runs - 1:
                wait_for("foot", lambda: "mapping toplevel" in read(run.log), 30, [run.server])
                time.sleep(5)
                s0, c0, b0 = cpu(run.server.pid), cpu(run.client.pid), relay_bytes(run.stats)
                print(f"idle for {args.seconds:.0f} s…", file=sys.stderr)
                time.sleep(args.seconds)
                s1, c1, b1 = cpu(run.server.pid), cpu(run.client.pid), relay_bytes(run.stats)
                table = proc_table()
                mem = {}
                for pid in tree(run.server.pid, table):
                    name = table[pid][2]
                    mem[name] = mem.get(name, 0) + pss_kib(pid)
                per_min = 60.0 / args.seconds
                idle = ((s1 - s0) * per_min, (c1 - c0) * per_min, (b1 - b0) * per_min, mem)
        finally:
            run.stop()
    print()
    print(f"## Default desktop (swaybg, waybar, mako, foot; 1280x800)")
    print()
    print("| figure | value |")
    print("|---|--:|")
    print(f"| session start → first frame with the panel, median of {len(starts)} | "
          f"{statistics.median(starts) * 1000:.0f} ms (runs: "
          f"{', '.join(f'{s * 1000:.0f}' for s in starts)}) |")
    if idle:
        srv, cli, nbytes, mem = idle
        print(f"| idle CPU, server side (daemon + session + desktop clients) | {srv:.3f} s/min |")
        print(f"| idle CPU, appliance | {cli:.3f} s/min |")
        print(f"| idle bytes on the wire, both ways | {nbytes / 1024:.1f} KiB/min |")
        print(f"| idle session memory (PSS, server side) | {sum(mem.values()) / 1024:.1f} MiB |")
        print()
        print("| program | PSS MiB |")
        print("|---|--:|")
        for name, kib in sorted(mem.items(), key=lambda kv: -kv[1]):
            print(f"| {name} | {kib / 1024:.1f} |")


if __name__ == "__main__":
    main()
