#!/usr/bin/env python3
"""Window management costs (called by `scripts/bench wm`): the reference tiling WM, a separate
client speaking wayray-wm-v1, against the compositor's built-in floating WM, in the same run.

Each session (1280x800, fixed) has two solid-colour windows (examples/input_probe: nothing on
screen changes unless the layout does). A headless appliance's input script presses a layout
binding PRESSES times (default 50), alternating directions, so every press changes the layout:

  wr-wm-tiling   Super+Shift+Left / Super+Shift+Right: the focused window swaps tiles with its
                 neighbour (a manage sequence, then a render sequence that moves both; the
                 two tiles are the same size, so no client redraws)
  built-in       Super+Left / Super+Right: the focused window snaps to the left / right half

  latency   binding pressed at the appliance → the new layout on its screen: for each press of
            the arrow key, the time from writing it to the input stream until the appliance
            presents the next frame that changed something (wrclient --latency-log); p50, p99.
            Under wr-wm-tiling that frame is the whole new layout (the compositor shows a
            transaction at once); under the built-in WM it is the first change, which may be the
            window moved before its client has redrawn at the new size
  CPU       CPU time (utime+stime from /proc/PID/stat, in clock ticks: 10 ms at USER_HZ 100, so
            200 µs per change at 50 presses is the resolution) per layout change of the WM process
            (wr-wm-tiling; the built-in WM has none of its own) and of the session compositor

Usage: bench-wm.py BIN_DIR [--presses N] [--gap-ms MS]
"""

import argparse, os, re, signal, subprocess, sys, tempfile, time

CLK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# evdev codes of the arrow keys the bindings use; the modifiers' presses are not counted.
ARROWS = {"105", "106"}


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
                raise SystemExit(f"bench-wm: {p.args[0]} exited while waiting for {what}")
        time.sleep(0.05)
    raise SystemExit(f"bench-wm: timed out waiting for {what}")


def cpu_seconds(pid):
    """utime + stime of one process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def session_compositor(root):
    """The `wrsrvd session` process below the daemon `root` (the spawner forks it)."""
    kids = {}
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
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append((int(d), argv))
    todo = [root]
    while todo:
        for pid, argv in kids.get(todo.pop(), []):
            if len(argv) > 1 and argv[1] == b"session":
                return pid
            todo.append(pid)
    return None


def percentile(values, p):
    v = sorted(values)
    i = min(len(v), max(1, int(p * len(v) + 0.5)))
    return v[i - 1]


class Session:
    def __init__(self, bins, work, tag, wm):
        self.dir = os.path.join(work, tag)
        xdg = os.path.join(self.dir, "xdg")
        os.makedirs(xdg, mode=0o700)
        self.log, self.out = os.path.join(self.dir, "wrsrvd.log"), os.path.join(self.dir, "wrsrvd.out")
        self.env = dict(os.environ, XDG_RUNTIME_DIR=xdg, RUST_LOG="info")
        self.procs = []
        argv = [f"{bins}/wrsrvd", "--listen", "127.0.0.1:0", "--api-listen", "off", "--appliance-auth", "open",
                "--state-dir", os.path.join(self.dir, "state"), "--socket", f"wayray-bench-{tag}",
                "--size", "1280x800", "--fixed-size"]
        if wm:
            argv += ["--wm", wm]
        self.server = self.start(argv, self.out, self.log)
        self.listen = wait_for("WAYRAY_LISTEN", lambda: re.search(r"WAYRAY_LISTEN=(\S+)", read(self.out)),
                               30, [self.server]).group(1)
        display = wait_for("WAYLAND_DISPLAY", lambda: re.search(r"WAYLAND_DISPLAY=(\S+)", read(self.out)),
                           30, [self.server]).group(1)
        self.env["WAYLAND_DISPLAY"] = display

    def start(self, argv, out, log):
        p = subprocess.Popen(argv, env=self.env, stdout=open(out, "w"), stderr=open(log, "w"),
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

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


def run(bins, work, tag, wm, keys, presses, gap_ms):
    s = Session(bins, work, tag, wm)
    try:
        wm_pid = None
        if wm:
            m = wait_for("the WM", lambda: re.search(r"window manager started pid=(\d+)", read(s.log)),
                         30, [s.server])
            wm_pid = int(m.group(1))
            wait_for("the WM's binding", lambda: "window manager connected" in read(s.log), 30, [s.server])
        for i, colour in enumerate(["cc3333", "33cc33"]):
            s.start([f"{bins}/examples/input_probe", f"bench-{i}", "300", "200", colour],
                    os.devnull, os.path.join(s.dir, f"probe{i}.log"))
            if wm:
                wait_for(f"window {i + 1} shown", lambda: f"wm layout shown windows={i + 1}" in read(s.log),
                         30, [s.server])
            else:
                wait_for(f"window {i + 1} mapped", lambda: read(s.log).count("mapping toplevel") > i, 30,
                         [s.server])
        compositor = session_compositor(s.server.pid)
        script = os.path.join(s.dir, "script")
        with open(script, "w") as f:
            f.write("wait 1000\n")
            for n in range(presses):
                f.write(f"combo {keys[n % 2]}\nwait {gap_ms}\n")
            f.write("wait 300\nexit\n")
        latency = os.path.join(s.dir, "latency")
        before = (cpu_seconds(wm_pid) if wm_pid else None,
                  cpu_seconds(compositor) if compositor else None)
        appliance = subprocess.run(
            [f"{bins}/wrclient", "--server", s.listen, "--state-dir", os.path.join(s.dir, "appliance"),
             "--display", "headless", "--input-script", script, "--latency-log", latency,
             "--exit-after", str(30 + presses * (gap_ms + 200) // 1000)],
            env=s.env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(s.dir, "wrclient.log"), "w"))
        if appliance.returncode != 0:
            raise SystemExit(f"bench-wm: wrclient failed; see {s.dir}/wrclient.log")
        after = (cpu_seconds(wm_pid) if wm_pid else None,
                 cpu_seconds(compositor) if compositor else None)
        ms = [int(ns) / 1e6 for code, ns in
              (l.split() for l in read(latency).splitlines() if l.strip()) if code in ARROWS]
        if len(ms) < presses * 9 // 10:
            raise SystemExit(f"bench-wm: only {len(ms)} of {presses} presses answered by a frame ({s.dir})")
        changes = presses
        per = lambda a, b: None if a is None or b is None else (b - a) / changes * 1e6
        return {"n": len(ms), "p50": percentile(ms, 0.5), "p99": percentile(ms, 0.99), "max": max(ms),
                "wm_cpu": per(before[0], after[0]), "comp_cpu": per(before[1], after[1])}
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins")
    ap.add_argument("--presses", type=int, default=int(os.environ.get("PRESSES", 50)))
    ap.add_argument("--gap-ms", type=int, default=int(os.environ.get("GAP_MS", 250)))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wayray-bench-wm-")
    rows = [
        ("wr-wm-tiling (Super+Shift+Left/Right: swap tiles)",
         run(args.bins, work, "tiling", f"{args.bins}/wr-wm-tiling",
             ("super+shift+left", "super+shift+right"), args.presses, args.gap_ms)),
        ("built-in floating (Super+Left/Right: snap halves)",
         run(args.bins, work, "builtin", None, ("super+left", "super+right"), args.presses, args.gap_ms)),
    ]
    us = lambda v: "—" if v is None else f"{v:.0f}"
    print()
    print(f"## Key binding → new layout on the appliance (loopback, 1280x800, two windows)")
    print()
    print("| WM | presses | p50 ms | p99 ms | max ms | WM process CPU µs/change | compositor CPU µs/change |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, r in rows:
        print(f"| {name} | {r['n']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | "
              f"{us(r['wm_cpu'])} | {us(r['comp_cpu'])} |")
    print()
    print(f"CPU from /proc/PID/stat (utime+stime, {1e6 / CLK:.0f} µs ticks) over the {args.presses} presses; "
          f"logs in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
