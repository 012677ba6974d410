#!/usr/bin/env python3
"""WayRay against waypipe: the same Wayland clients doing the same work, once through WayRay and
once through waypipe, measured in one run (called by `scripts/bench-vs-waypipe`, which installs
the packages and builds the release binaries first).

  WayRay:  client -> wrsrvd (daemon + `wrsrvd session`) -> QUIC over loopback through the
           counting UDP relay (appliance/examples/netem.rs) -> headless wrclient
  waypipe: client -> `waypipe server` -> Unix socket through the counting relay (netem --unix)
           -> `waypipe client` -> weston 10 (x11 backend, pixman) inside Xvfb

Per workload it reports the bytes both ways between the two halves, the CPU seconds of each half
(utime+stime+cutime+cstime from /proc/PID/stat of every process of the half, the clients
excluded: they are started by this script, so they are nobody's children but ours; sampled when
the workload starts and again after it ended and drained, before anything is stopped), the
frames delivered and, for typing on WayRay, input->photon latency.

Workloads (same client, same window size on both sides):
  typing    foot running `cat`, 100x35 cells; one character every 40 ms (wrclient --input-script
            on WayRay, xdotool into the weston window for waypipe)
  scroll    foot, 100x35 cells, printing a 20,000-line text file at a steady pace (~8 s)
  redraw    foot, 160x45 cells: a new page of different text every 100 ms (~8 s)
  shm       weston-simple-shm for 8 s
  video     server/examples/video_client: moving gradient + noise blocks, 640x360, 8 s
  firefox   firefox-esr (native Wayland) scrolling a long text page served on loopback by this
            script: the page scrolls 8 px per animation frame for 8 s once it has loaded, and
            reports the frames it drew (requestAnimationFrame callbacks: both compositors pace
            them with their frame callbacks); measured from the page's start signal to its end
            signal, so the browser's start-up is in neither figure. Not in the default set
            (--only firefox): a browser takes 10-25 s to start on 2 cores.

shm and video also run through WayRay with `wrsrvd --no-video` (every pixel lossless), the
baseline H.264 video regions are measured against.

Then typing and scroll again through WayRay only, the relay adding 10 ms each way (+-3 ms
jitter): without loss or reordering, with 2 % reordering, and with 2 % reordering plus 1 %, 5 % or
10 % loss (Sun Ray kept working at 10 % sustained loss): latency, and whether the appliance ends
on exactly the server's final frame (frame-log digests, as server/tests/vertical_slice.rs
compares them).

Writes OUT/results.md (the tables it prints) and OUT/results.json (every figure, plus the
relay's counts); scripts/bench-vs-waypipe draws OUT/ratios.png from it.
"""

import argparse, json, os, random, re, shutil, statistics, signal, subprocess, sys, tempfile, time

CLK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COMMIT = re.compile(r"-> wl_surface@\d+\.commit\(\)")
KEY = re.compile(r"wl_keyboard@\d+\.key\(")

TYPE_DELAY_MS = 40
TYPE_LINES = 4
TYPE_LINE_CHARS = 50

ALL_WORKLOADS = ["typing", "scroll", "redraw", "shm", "video"]
# Also runnable with --only, not in the default set.
OPTIONAL_WORKLOADS = ["firefox"]
# Workloads also run through WayRay with video regions off, the lossless baseline H.264 is
# measured against.
LOSSLESS_BASELINE = ["shm", "video"]
# (loss %, reordering %) of the WayRay-only runs at 20 ms RTT.
LOSS_CONDITIONS = [(0, 0), (0, 2), (1, 2), (5, 2), (10, 2)]


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- processes

class Procs:
    """Every process this script starts, each in its own process group, so that stop_all()
    (also run on errors and signals) takes their children with them."""

    def __init__(self):
        self.procs = []  # (Popen, name, log path)

    def start(self, name, args, log, env=None, stdout=None, cwd=None):
        e = dict(os.environ)
        e.update(env or {})
        try:
            p = subprocess.Popen(args, stdout=stdout if stdout is not None else open(log, "w"),
                                 stderr=open(log, "a") if stdout is not None else subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=e, cwd=cwd,
                                 start_new_session=True, text=True)
        except OSError as err:
            raise BenchError(f"cannot start {name} ({args[0]}): {err}")
        self.procs.append((p, name, log))
        return p

    def check_alive(self, p):
        for q, name, log in self.procs:
            if q is p and q.poll() is not None:
                raise BenchError(f"{name} exited early (status {q.returncode}):\n{tail(log)}")

    def stop(self, p, timeout=3.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait()

    def stop_all(self):
        for p, _, _ in reversed(self.procs):
            self.stop(p)
        self.procs.clear()


PROCS = Procs()


def tail(path, n=25):
    try:
        with open(path, errors="replace") as f:
            lines = [ANSI.sub("", l) for l in f.readlines()[-n:]]
        return "".join("    " + l for l in lines) or "    (empty log)\n"
    except OSError:
        return "    (no log)\n"


def wait_for(what, cond, timeout=30.0, procs=(), log=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = cond()
        if r:
            return r
        for p in procs:
            PROCS.check_alive(p)
        time.sleep(0.02)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}"
                     + (f"; log {log}:\n{tail(log)}" if log else ""))


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def free_display():
    for n in range(random.randrange(100, 400), 1000):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    raise BenchError("no free X display number")


# ---------------------------------------------------------------- CPU accounting

def proc_table():
    """pid -> (ppid, cpu seconds incl. reaped children, command name)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        ppid = int(fields[1])
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        name = s[s.index("(") + 1:s.rindex(")")]
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            # The session compositor is `wrsrvd session`: same command name as the daemon.
            if len(argv) > 1 and argv[1] == b"session":
                name += " session"
        except OSError:
            pass
        table[int(d)] = (ppid, ticks / CLK, name)
    return table


def tree_cpu_by_command(roots, table=None):
    """CPU seconds of the processes `roots` and all their live descendants (children that exited
    and were reaped are in their parent's cutime/cstime), per command name."""
    table = table or proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    parts, todo, seen = {}, list(roots), set()
    while todo:
        p = todo.pop()
        if p in seen or p not in table:
            continue
        seen.add(p)
        _, cpu, comm = table[p]
        parts[comm] = parts.get(comm, 0.0) + cpu
        todo.extend(kids.get(p, []))
    return parts


def tree_cpu(roots, table=None):
    return sum(tree_cpu_by_command(roots, table).values())


def sample(sides, table=None):
    table = table or proc_table()
    return {name: tree_cpu(pids, table) for name, pids in sides.items()}


def sample_with_parts(sides):
    """`sample`, plus the server half per command name (the daemon wrsrvd and its session,
    `wrsrvd session`), from one scan of /proc."""
    table = proc_table()
    return sample(sides, table), tree_cpu_by_command(sides["server"], table)


# ---------------------------------------------------------------- workloads

def make_bigfile(path, lines=20000):
    rng = random.Random(20261125)
    words = ("wayray pixels frame damage surface buffer commit seat keyboard pointer output "
             "compositor appliance session token quic stream codec tile delta zstd scroll video "
             "latency photon input lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
             "eiusmod tempor incididunt ut labore et dolore magna aliqua").split()
    with open(path, "w") as f:
        for i in range(lines):
            n = rng.randrange(3, 16)
            text = " ".join(rng.choice(words) for _ in range(n))
            indent = " " * rng.randrange(0, 12)
            f.write(f"{i:05d} {indent}{text}"[:98] + "\n")


PACE = r"""
import sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
lines = open(path).read().splitlines(keepends=True)
chunk = max(1, len(lines) // int(seconds * 100))
start = time.monotonic()
for i in range(0, len(lines), chunk):
    sys.stdout.write("".join(lines[i:i + chunk])); sys.stdout.flush()
    delay = start + (i // chunk + 1) / 100 - time.monotonic()
    if delay > 0: time.sleep(delay)
time.sleep(1)
"""

REDRAW = r"""
import sys, time
path, seconds, rows, cols = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = [l.rstrip("\n")[:cols] for l in open(path)]
start = time.monotonic()
pages = int(seconds * 10)
for p in range(pages):
    page = lines[(p * 37) % (len(lines) - rows):][:rows - 1]
    sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(page)); sys.stdout.flush()
    delay = start + (p + 1) / 10 - time.monotonic()
    if delay > 0: time.sleep(delay)
time.sleep(1)
"""


def typing_text():
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(TYPE_LINES):
        line = ""
        while len(line) < TYPE_LINE_CHARS:
            line += "".join(rng.choice(letters) for _ in range(rng.randrange(2, 9))) + " "
        out.append(line[:TYPE_LINE_CHARS].rstrip())
    return out


class Workload:
    def __init__(self, name, title, argv, seconds, typing=False, forever=False, page=None):
        self.name, self.title, self.argv, self.seconds = name, title, argv, seconds
        # `typing`: driven by keys, ends when they are typed; `forever`: runs until stopped;
        # `page`: a browser showing PageServer's page, measured between the page's signals.
        self.typing, self.forever, self.page = typing, forever, page


SCROLL_PAGE = """<!doctype html><html><head><meta charset=utf-8><title>WayRay scroll bench</title>
<style>body{font:16px/1.4 sans-serif;margin:2em;background:#fff;color:#222}</style></head><body>
%(body)s
<script>
addEventListener("load", () => setTimeout(() => {
  fetch("/start");
  let frames = 0, t0 = null;
  function step(t) {
    if (t0 === null) t0 = t;
    window.scrollBy(0, 8); frames++;
    if (t - t0 < %(ms)d) requestAnimationFrame(step);
    else fetch("/end?frames=" + frames + "&ms=" + Math.round(t - t0));
  }
  requestAnimationFrame(step);
}, 3000));
</script></body></html>"""


class PageServer:
    """Serves the scroll page on loopback and records when the page says it starts and ends
    scrolling, and the frames it drew."""

    def __init__(self, body, seconds):
        import http.server, threading
        page = (SCROLL_PAGE % {"body": body, "ms": int(seconds * 1000)}).encode()
        marks = self.marks = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path
                if path.startswith("/start"):
                    marks["start"] = time.monotonic()
                elif path.startswith("/end"):
                    marks["end"] = time.monotonic()
                    q = dict(kv.split("=", 1) for kv in path.split("?", 1)[-1].split("&") if "=" in kv)
                    marks["frames"], marks["ms"] = int(q.get("frames", 0)), int(q.get("ms", 0))
                body = page if path == "/" else b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def firefox_argv(run, url):
    profile = os.path.join(run, "firefox-profile")
    os.makedirs(profile, exist_ok=True)
    with open(os.path.join(profile, "user.js"), "w") as f:
        for pref, value in [("browser.aboutwelcome.enabled", "false"),
                            ("browser.shell.checkDefaultBrowser", "false"),
                            ("browser.startup.homepage_override.mstone", '"ignore"'),
                            ("datareporting.policy.dataSubmissionEnabled", "false"),
                            ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
                            ("app.update.enabled", "false"),
                            ("trailhead.firstrun.didSeeAboutWelcome", "true")]:
            f.write(f'user_pref("{pref}", {value});\n')
    return ["firefox-esr", "--no-remote", "--new-instance", "--profile", profile, url]


def run_page(wl, run, cenv, log, sides, relay_stats):
    """Starts the browser on a fresh PageServer and measures between the page's start and end
    signals: returns (base, end, bytes0, bytes1, duration, page marks, Popen, PageServer)."""
    server = PageServer(wl.page, wl.seconds)
    env = dict(cenv, MOZ_ENABLE_WAYLAND="1", HOME=run)
    env.pop("DISPLAY", None)
    app = PROCS.start(f"client {wl.name}", firefox_argv(run, server.url), log, env=env, cwd=run)
    wait_for("the page's start signal", lambda: "start" in server.marks, 180, [app], log)
    base, b0 = sample_with_parts(sides), relay_bytes(relay_stats)
    wait_for("the page's end signal", lambda: "end" in server.marks, wl.seconds + 60, [app], log)
    end, b1 = sample_with_parts(sides), relay_bytes(relay_stats)
    return base, end, b0, b1, server.marks["end"] - server.marks["start"], server.marks, app, server


def workloads(work, bins, seconds):
    big = os.path.join(work, "big.txt")
    make_bigfile(big)
    pace = os.path.join(work, "pace.py")
    redraw = os.path.join(work, "redraw.py")
    with open(pace, "w") as f:
        f.write(PACE)
    with open(redraw, "w") as f:
        f.write(REDRAW)
    foot = ["foot", "--override=scrollback.lines=1000"]
    return {
        "typing": Workload("typing", "typing into foot (cat)",
                           foot + ["--window-size-chars=100x35", "cat"], 0, typing=True),
        "scroll": Workload("scroll", "foot scrolling 20k lines",
                           foot + ["--window-size-chars=100x35", "python3", pace, big, str(seconds)],
                           seconds + 1),
        "redraw": Workload("redraw", "foot full-page redraw every 100 ms (160x45)",
                           foot + ["--window-size-chars=160x45", "python3", redraw, big,
                                   str(seconds), "45", "160"], seconds + 1),
        "shm": Workload("shm", "weston-simple-shm", ["weston-simple-shm"], seconds, forever=True),
        "video": Workload("video", "video_client 640x360",
                          [f"{bins}/examples/video_client", "--size", "640x360", "--seconds",
                           str(seconds)], seconds),
        "firefox": Workload("firefox", "firefox-esr scrolling a long page", [], seconds,
                            page=scroll_page_body(big)),
    }


def scroll_page_body(bigfile):
    """3000 lines of the big text file as paragraphs of ten lines."""
    import html
    lines = open(bigfile).read().splitlines()[:3000]
    return "\n".join("<p>" + html.escape(" ".join(lines[i:i + 10])) + "</p>"
                     for i in range(0, len(lines), 10))


def client_frames(wl, log):
    """Frames the client committed: its own count (video_client) or WAYLAND_DEBUG commits."""
    text = read(log)
    m = re.search(r"VIDEO_CLIENT_FRAMES=(\d+)", text)
    if m:
        return int(m.group(1))
    return len(COMMIT.findall(text))


def run_client(wl, run, env, log):
    """Starts the workload's client; returns (Popen, end condition)."""
    env = dict(env, WAYLAND_DEBUG="client")
    env.pop("DISPLAY", None)
    return PROCS.start(f"client {wl.name}", wl.argv, log, env=env, cwd=run)


def finish_client(p, wl, t0):
    """Lets the client do its fixed amount of work: clients that end by themselves get their time
    plus slack; weston-simple-shm, which runs until stopped, is stopped after its time."""
    end = t0 + wl.seconds + (0 if wl.forever else 15)
    while p.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    if p.poll() is None and not wl.forever:
        print(f"bench-vs-waypipe: {wl.name}: the client had not finished after {wl.seconds + 15:.0f} s; "
              "stopped", file=sys.stderr)
    PROCS.stop(p)


def netem(bins, run, name, to, extra=(), unix=None):
    stats = os.path.join(run, f"{name}.stats.json")
    log = os.path.join(run, f"{name}.log")
    args = [f"{bins}/examples/netem", "--to", to, "--stats", stats, "--stats-interval-ms", "50"]
    if unix:
        args += ["--unix", unix]
    args += list(extra)
    out = os.path.join(run, f"{name}.out")
    p = PROCS.start(name, args, log, stdout=open(out, "w"))
    addr = wait_for("the relay", lambda: re.search(r"NETEM_LISTEN=(\S+)", read(out)), 10, [p], log)
    wait_for("the relay's first stats", lambda: os.path.exists(stats), 5, [p], log)
    return p, addr.group(1), stats


def relay_bytes(stats):
    for _ in range(20):
        try:
            with open(stats) as f:
                s = json.load(f)
            return s["up"]["bytes"], s["down"]["bytes"], s
        except (OSError, ValueError):
            time.sleep(0.02)
    raise BenchError(f"cannot read relay stats {stats}")


def relay_settled(stats, _seen={}):
    """True once the server's bytes have not grown for 300 ms (the key frame was delivered)."""
    down = relay_bytes(stats)[1]
    now = time.monotonic()
    last = _seen.get(stats)
    if last is None or last[0] != down:
        _seen[stats] = (down, now)
        return False
    return down > 0 and now - last[1] >= 0.3


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def read_frame_log(path):
    out = []
    for l in read(path).splitlines():
        f = l.split()
        if len(f) >= 3 and f[0].isdigit():
            out.append((int(f[0]), f[1], f[2]))
    return out


# ---------------------------------------------------------------- WayRay

def run_wayray(wl, bins, work, impair=(), tag="wayray", server_frames=False, frame_log=True,
               server_args=()):
    """One WayRay run. `frame_log`: the appliance logs every frame (frames shown); it hashes the
    whole framebuffer for that, which costs wrclient CPU, so the CPU runs go without it.
    `server_args`: extra wrsrvd flags (`--no-video` for the lossless baseline)."""
    run = os.path.join(work, f"{tag}-{wl.name}")
    os.makedirs(run)
    xdg = os.path.join(run, "xdg")
    os.makedirs(xdg, mode=0o700)
    srv_log = os.path.join(run, "wrsrvd.log")
    srv_out = os.path.join(run, "wrsrvd.out")
    args = [f"{bins}/wrsrvd", "--listen", "127.0.0.1:0", "--api-listen", "off", "--appliance-auth", "open", "--state-dir", os.path.join(run, "state"),
            "--run-dir", os.path.join(xdg, "wayray"), "--socket", f"wr-bench-{os.getpid()}"]
    args += list(server_args)
    sfl = os.path.join(run, "server-frames.log")
    if server_frames:
        args += ["--frame-log", sfl]
    env = {"XDG_RUNTIME_DIR": xdg, "RUST_LOG": "info"}
    server = PROCS.start("wrsrvd", args, srv_log, env=env, stdout=open(srv_out, "w"))
    listen = wait_for("wrsrvd's WAYRAY_LISTEN", lambda: re.search(r"WAYRAY_LISTEN=(\S+)", read(srv_out)),
                      30, [server], srv_log).group(1)
    display = wait_for("wrsrvd's WAYLAND_DISPLAY",
                       lambda: re.search(r"WAYLAND_DISPLAY=(\S+)", read(srv_out)), 30, [server],
                       srv_log).group(1)
    relay, relay_addr, stats = netem(bins, run, "relay", listen, impair)

    text = typing_text() if wl.typing else []
    keys = sum(len(l) + 1 for l in text)
    script = os.path.join(run, "input.script")
    with open(script, "w") as f:
        if wl.typing:
            f.write(f"wait 4000\ntype-delay {TYPE_DELAY_MS}\n")
            for line in text:
                f.write(f"type {line}\nwait {TYPE_DELAY_MS}\nkey enter\nwait {TYPE_DELAY_MS}\n")
        f.write("wait 3600000\n")
    afl = os.path.join(run, "appliance-frames.log")
    lat = os.path.join(run, "latency.log")
    cl_log = os.path.join(run, "wrclient.log")
    client = PROCS.start("wrclient", [
        f"{bins}/wrclient", "--server", relay_addr, "--state-dir", os.path.join(run, "appliance"),
        "--display", "headless", "--screen", "1280x800", "--input-script", script,
        "--latency-log", lat] + (["--frame-log", afl] if frame_log else []), cl_log,
        env={"RUST_LOG": "info"})
    # Without a frame log, the first frame has arrived once the server stops sending the key frame.
    wait_for("the appliance's first frame",
             lambda: read_frame_log(afl) if frame_log else relay_settled(stats), 30,
             [server, client, relay], cl_log)
    first_frame = time.monotonic()
    cenv = {"XDG_RUNTIME_DIR": xdg, "WAYLAND_DISPLAY": display}
    app_log = os.path.join(run, "client.log")
    sides = {"server": [server.pid], "client": [client.pid]}
    if wl.typing:
        app = run_client(wl, run, cenv, app_log)
        wait_for("foot's first frame", lambda: len(COMMIT.findall(read(app_log))) >= 1, 20,
                 [server, app], app_log)
        time.sleep(max(0.2, first_frame + 2.5 - time.monotonic()))
        if time.monotonic() > first_frame + 3.3:
            raise BenchError("foot took too long to map: the typing script started before the baseline")
        (base, parts0), b0, n0 = sample_with_parts(sides), relay_bytes(stats), len(read_frame_log(afl))
        c0 = client_frames(wl, app_log)
        t0 = time.monotonic()
        wait_for(f"{keys} key presses in the latency log",
                 lambda: len(read(lat).splitlines()) >= keys,
                 3 + keys * TYPE_DELAY_MS * 2.5 / 1000, [server, client, app], cl_log)
        time.sleep(1.0)
        duration = time.monotonic() - t0
    elif wl.page:
        page = run_page(wl, run, cenv, app_log, sides, stats)
        (base, parts0), _, b0, _, duration, marks, app, pages = page
        n0 = None
        c0 = 0
    else:
        time.sleep(0.5)
        (base, parts0), b0, n0 = sample_with_parts(sides), relay_bytes(stats), len(read_frame_log(afl))
        c0 = 0
        t0 = time.monotonic()
        app = run_client(wl, run, cenv, app_log)
        finish_client(app, wl, t0)
        time.sleep(1.0)
        duration = time.monotonic() - t0
    final = None
    if server_frames:
        # The appliance must end on the server's last frame, byte for byte.
        def settled():
            s, a = read_frame_log(sfl), read_frame_log(afl)
            return s and a and a[-1][1] == s[-1][1] and a[-1][0] == s[-1][0]
        end = time.monotonic() + 10
        while time.monotonic() < end and not settled():
            time.sleep(0.05)
        s, a = read_frame_log(sfl), read_frame_log(afl)
        shown = {(seq, d) for seq, d, _ in a}
        final = {
            "server_frames": len(s), "appliance_frames": len(a),
            "server_last": f"{s[-1][0]} {s[-1][1]} {s[-1][2]}" if s else None,
            "appliance_last": f"{a[-1][0]} {a[-1][1]} {a[-1][2]}" if a else None,
            "final_frame_identical": bool(s and (s[-1][0], s[-1][1]) in shown and a[-1][1] == s[-1][1]),
        }
    (end_cpu, parts1), b1, frames = sample_with_parts(sides), relay_bytes(stats), read_frame_log(afl)
    if wl.page:
        # The figures at the page's end signal, not after the browser is stopped.
        (end_cpu, parts1), _, _, b1 = page[1], None, None, page[3]
        PROCS.stop(app)
        pages.stop()
        n0 = len(frames)  # frames are counted by the page (requestAnimationFrame) instead
    if wl.typing:
        PROCS.stop(app)
    c1 = client_frames(wl, app_log)
    lats = [int(l.split()[1]) / 1e6 for l in read(lat).splitlines() if len(l.split()) == 2]
    keys_seen = len(KEY.findall(read(app_log))) // 2
    for p in (client, relay, server):
        PROCS.stop(p)
    r = {
        "system": "wayray", "workload": wl.name, "seconds": round(duration, 2),
        "bytes_up": b1[0] - b0[0], "bytes_down": b1[1] - b0[1],
        "cpu_server": round(end_cpu["server"] - base["server"], 3),
        "cpu_client": round(end_cpu["client"] - base["client"], 3),
        # The server half per process: the daemon (QUIC, sessions) and the session (compositor,
        # encoder).
        "cpu_server_parts": {k: round(v - parts0.get(k, 0.0), 3) for k, v in parts1.items()},
        "frames_shown": len(frames) - n0 if frame_log else None,
        "client_commits": c1 - c0,
        "relay": b1[2],
    }
    r["bytes_total"] = r["bytes_up"] + r["bytes_down"]
    r["cpu_total"] = round(r["cpu_server"] + r["cpu_client"], 3)
    if wl.page:
        r["page_frames"] = marks.get("frames")
        r["page_fps"] = round(marks["frames"] * 1000 / marks["ms"], 1) if marks.get("ms") else None
    if wl.typing:
        r["keys_sent"] = keys
        r["keys_received_by_client"] = keys_seen
        r["latency_samples"] = len(lats)
        r["latency_p50_ms"] = pct(lats, 50)
        r["latency_p95_ms"] = pct(lats, 95)
    if final is not None:
        r.update(final)
    return r


# ---------------------------------------------------------------- waypipe

def run_waypipe(wl, bins, work, compress=None, tag="waypipe"):
    run = os.path.join(work, f"{tag}-{wl.name}")
    os.makedirs(run)
    xdg = os.path.join(run, "xdg")
    os.makedirs(xdg, mode=0o700)
    n = free_display()
    xvfb_log = os.path.join(run, "xvfb.log")
    xvfb = PROCS.start("Xvfb", ["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                       xvfb_log)
    wait_for("Xvfb", lambda: os.path.exists(f"/tmp/.X11-unix/X{n}"), 15, [xvfb], xvfb_log)
    wlog = os.path.join(run, "weston.log")
    view = f"wp-view-{os.getpid()}"
    weston = PROCS.start("weston", [
        "weston", "--backend=x11-backend.so", "--use-pixman", f"--socket={view}", "--width=1280",
        "--height=800", "--idle-time=0", "--no-config"], wlog,
        env={"DISPLAY": f":{n}", "XDG_RUNTIME_DIR": xdg})
    wait_for("weston's socket", lambda: os.path.exists(os.path.join(xdg, view)), 20, [weston], wlog)
    wait_for("weston's desktop shell", lambda: "launching" in read(wlog), 10, [weston], wlog)
    time.sleep(0.5)
    copts = ["--compress", compress] if compress else []
    client_sock = os.path.join(run, "waypipe-client.sock")
    relay_sock = os.path.join(run, "relay.sock")
    clog = os.path.join(run, "waypipe-client.log")
    wpc = PROCS.start("waypipe client", ["waypipe", "--socket", client_sock] + copts + ["client"], clog,
                      env={"WAYLAND_DISPLAY": view, "XDG_RUNTIME_DIR": xdg})
    wait_for("waypipe client's socket", lambda: os.path.exists(client_sock), 10, [wpc], clog)
    relay, _, stats = netem(bins, run, "relay", client_sock, unix=relay_sock)
    app_display = f"wp-app-{os.getpid()}"
    slog = os.path.join(run, "waypipe-server.log")
    wps = PROCS.start("waypipe server", ["waypipe", "--socket", relay_sock, "--display", app_display]
                      + copts + ["server", "--", "sleep", "100000"], slog, env={"XDG_RUNTIME_DIR": xdg})
    wait_for("waypipe server's display socket", lambda: os.path.exists(os.path.join(xdg, app_display)),
             10, [wps], slog)
    sides = {"server": [wps.pid], "client": [wpc.pid], "weston": [weston.pid], "xvfb": [xvfb.pid]}
    cenv = {"XDG_RUNTIME_DIR": xdg, "WAYLAND_DISPLAY": app_display}
    app_log = os.path.join(run, "client.log")
    if wl.typing:
        app = run_client(wl, run, cenv, app_log)
        wait_for("foot's first frame", lambda: len(COMMIT.findall(read(app_log))) >= 1, 20, [wps, app],
                 app_log)
        time.sleep(1.5)
        base, b0, c0 = sample(sides), relay_bytes(stats), client_frames(wl, app_log)
        t0 = time.monotonic()
        text = "\n".join(typing_text()) + "\n"
        xlog = os.path.join(run, "xdotool.log")
        # xdotool sleeps half its --delay per character (measured: --delay 80 types one
        # character every 40 ms), so twice the script's type-delay gives the same rate.
        xd = PROCS.start("xdotool", ["xdotool", "type", "--delay", str(2 * TYPE_DELAY_MS), text], xlog,
                         env={"DISPLAY": f":{n}"})
        wait_for("xdotool to finish typing", lambda: xd.poll() is not None,
                 5 + len(text) * TYPE_DELAY_MS * 3 / 1000)
        if xd.returncode != 0:
            raise BenchError(f"xdotool failed:\n{tail(xlog)}")
        time.sleep(1.0)
        duration = time.monotonic() - t0
    elif wl.page:
        page = run_page(wl, run, cenv, app_log, sides, stats)
        c0 = 0
    else:
        time.sleep(0.5)
        base, b0, c0 = sample(sides), relay_bytes(stats), 0
        t0 = time.monotonic()
        app = run_client(wl, run, cenv, app_log)
        finish_client(app, wl, t0)
        time.sleep(1.0)
        duration = time.monotonic() - t0
    end_cpu, b1 = sample(sides), relay_bytes(stats)
    if wl.page:
        (base, _), (end_cpu, _), b0, b1, duration, marks, app, pages = page
        PROCS.stop(app)
        pages.stop()
    if wl.typing:
        PROCS.stop(app)
    c1 = client_frames(wl, app_log)
    keys_seen = len(KEY.findall(read(app_log))) // 2
    for p in (wps, relay, wpc, weston, xvfb):
        PROCS.stop(p)
    d = {k: round(end_cpu[k] - base[k], 3) for k in sides}
    r = {
        "system": tag, "workload": wl.name, "compression": compress or "lz4 (default)",
        "seconds": round(duration, 2),
        "bytes_up": b1[0] - b0[0], "bytes_down": b1[1] - b0[1],
        "cpu_server": d["server"], "cpu_client": round(d["client"] + d["weston"], 3),
        "cpu_waypipe_client": d["client"], "cpu_weston": d["weston"], "cpu_xvfb": d["xvfb"],
        "frames_shown": None, "client_commits": c1 - c0, "relay": b1[2],
    }
    r["bytes_total"] = r["bytes_up"] + r["bytes_down"]
    r["cpu_total"] = round(r["cpu_server"] + r["cpu_client"], 3)
    if wl.page:
        r["page_frames"] = marks.get("frames")
        r["page_fps"] = round(marks["frames"] * 1000 / marks["ms"], 1) if marks.get("ms") else None
    if wl.typing:
        r["keys_sent"] = sum(len(l) + 1 for l in typing_text())
        r["keys_received_by_client"] = keys_seen
    return r


# ---------------------------------------------------------------- report

def fmt_bytes(n):
    if n is None:
        return "n/a"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def f2(x, suffix=""):
    return "n/a" if x is None else f"{x:.2f}{suffix}"


def ratio(a, b):
    return None if a is None or not b else a / b


def cpu_per_frame(r):
    """CPU milliseconds (both halves) per frame that reached the screen: WayRay renders at most
    what the appliance acknowledges and waypipe forwards every commit, so the two deliver
    different frame counts for the same work. WayRay's frames come from its frame-log run."""
    frames = r.get("frames_shown") if r["system"].startswith("wayray") else r.get("client_commits")
    return None if not frames else r["cpu_total"] * 1000 / frames


def report(results, loss, meta):
    out = []
    runs = ("one run" if meta.get("repeat", 1) == 1 else
            f"{meta['repeat']} CPU runs per system, the median by CPU total shown")
    out.append(f"## WayRay vs waypipe (loopback, {runs})\n")
    out.append(f"Run {meta['date']} on {meta['cpus']} CPUs; waypipe {meta['waypipe']}; "
               f"weston 10 (x11 backend, pixman) in Xvfb as waypipe's viewer; WayRay: wrsrvd + "
               f"headless wrclient (1280x800). Bytes: both directions between the two halves "
               f"(counting relay). CPU seconds: server half / client half (clients excluded; "
               f"waypipe's client half = `waypipe client` + weston; Xvfb listed apart, in no total). "
               f"Frames: WayRay's frames shown on the appliance / the client's commits, from a "
               f"second WayRay run with `wrclient --frame-log` (its per-frame digest of the whole "
               f"framebuffer costs CPU, so the CPU run goes without it); waypipe: the client's "
               f"commits (WAYLAND_DEBUG), all of which waypipe forwards. CPU ms per frame: CPU total "
               f"over those frames.\n")
    out.append("| workload | system | s | bytes | CPU server s | CPU client s | CPU total s | "
               "frames shown / client commits | CPU ms per frame | latency p50 / p95 ms |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for wl in results:
        for r in wl["runs"]:
            if r.get("error"):
                out.append(f"| {wl['title']} | {r['label']} | | failed: {r['error'][:80]} | | | | | | |")
                continue
            client = f2(r["cpu_client"])
            if "cpu_weston" in r:
                client += f" (weston {r['cpu_weston']:.2f}, Xvfb {r['cpu_xvfb']:.2f})"
            if r["system"].startswith("wayray"):
                frames = f"{r['frames_shown']} / {r.get('frames_run_client_commits')}"
            else:
                frames = f"n/a / {r['client_commits']}"
            lat = (f"{f2(r.get('latency_p50_ms'))} / {f2(r.get('latency_p95_ms'))}"
                   if r.get("latency_p50_ms") is not None else "n/a")
            total = f2(r["cpu_total"])
            if r.get("cpu_total_runs"):
                total += f" (runs {', '.join(f2(x) for x in r['cpu_total_runs'])})"
            server = f2(r["cpu_server"])
            parts = r.get("cpu_server_parts") or {}
            if "wrsrvd session" in parts:
                server += (f" (session {parts['wrsrvd session']:.2f}, "
                           f"daemon {parts.get('wrsrvd', 0.0):.2f})")
            out.append(f"| {wl['title']} | {r['label']} | {r['seconds']:.1f} | {fmt_bytes(r['bytes_total'])} | "
                       f"{server} | {client} | {total} | {frames} | "
                       f"{f2(cpu_per_frame(r))} | {lat} |")
    out.append("")
    out.append("### Ratios WayRay / waypipe (lz4 default; < 1 means WayRay uses less)\n")
    out.append("| workload | bytes | bytes vs zstd=5 | bytes vs WayRay lossless | CPU server | "
               "CPU client | CPU total |")
    out.append("|---|--:|--:|--:|--:|--:|--:|")
    for wl in results:
        rt = wl.get("ratios")
        if rt:
            out.append(f"| {wl['title']} | {f2(rt['bytes'])} | {f2(rt.get('bytes_vs_zstd'))} | "
                       f"{f2(rt.get('bytes_vs_lossless'))} | "
                       f"{f2(rt['cpu_server'])} | {f2(rt['cpu_client'])} | {f2(rt['cpu_total'])} |")
    pages = [r for wl in results for r in wl["runs"] if r.get("page_fps") is not None]
    if pages:
        out.append("")
        out.append("Browser scrolling: frames the page drew per second (requestAnimationFrame, paced "
                   "by each compositor's frame callbacks) and bytes per second: "
                   + ", ".join(f"{r['label']} {r['page_fps']} fps, "
                               f"{fmt_bytes(r['bytes_total'] / r['seconds'])}/s" for r in pages) + ".")
    typing = [r for wl in results for r in wl["runs"] if wl["name"] == "typing" and not r.get("error")]
    if typing:
        out.append("")
        out.append("Typing: keys delivered to foot (WAYLAND_DEBUG key events) / keys sent: "
                   + ", ".join(f"{r['label']} {r.get('keys_received_by_client')}/{r.get('keys_sent')}"
                               for r in typing)
                   + ". Input->photon on waypipe is not measured (no frame-presented timestamps on "
                     "the weston side).")
    if loss:
        out.append("")
        out.append("### WayRay under delay, jitter and loss (relay: 10 ms each way +-3 ms jitter)\n")
        out.append("Reordering: that share of datagrams is held back 6 ms so later ones overtake it. "
                   "Final frame identical: the appliance's last frame-log line has the server's last "
                   "sequence number and digest (byte-identical final picture).\n")
        out.append("| workload | loss | reordering | bytes | dropped datagrams | frames shown | "
                   "latency p50 / p95 ms | final frame identical |")
        out.append("|---|--:|--:|--:|--:|--:|--:|---|")
        for r in loss:
            if r.get("error"):
                out.append(f"| {r['workload']} | {r['loss_pct']} % | {r['reorder_pct']} % | "
                           f"failed: {r['error'][:80]} | | | | |")
                continue
            dropped = r["relay"]["up"]["dropped"] + r["relay"]["down"]["dropped"]
            sent = r["relay"]["up"]["datagrams"] + r["relay"]["down"]["datagrams"]
            lat = (f"{f2(r.get('latency_p50_ms'))} / {f2(r.get('latency_p95_ms'))}"
                   if r.get("latency_p50_ms") is not None else "n/a")
            ident = "yes" if r.get("final_frame_identical") else f"NO (server {r.get('server_last')}, appliance {r.get('appliance_last')})"
            out.append(f"| {r['workload']} | {r['loss_pct']} % | {r['reorder_pct']} % | {fmt_bytes(r['bytes_total'])} | "
                       f"{dropped} of {sent} | {r['frames_shown']} | {lat} | {ident} |")
        # Medians over the repeated runs of each condition (--loss-repeat).
        groups = {}
        for r in loss:
            if not r.get("error") and r.get("latency_p95_ms") is not None:
                groups.setdefault((r["workload"], r["loss_pct"], r["reorder_pct"]), []).append(r)
        if any(len(g) > 1 for g in groups.values()):
            out.append("")
            out.append("| workload | loss | reordering | runs | median latency p50 / p95 ms | p95 of each run | keys seen by the client |")
            out.append("|---|--:|--:|--:|--:|---|---|")
            for (w, l, ro), g in groups.items():
                p50 = statistics.median(r["latency_p50_ms"] for r in g)
                p95s = [r["latency_p95_ms"] for r in g]
                keys = ", ".join(f"{r.get('keys_received_by_client')}/{r.get('keys_sent')}" for r in g)
                out.append(f"| {w} | {l} % | {ro} % | {len(g)} | {f2(p50)} / {f2(statistics.median(p95s))} | "
                           f"{', '.join(f2(x) for x in p95s)} | {keys} |")
    return "\n".join(out) + "\n"


def median_run(runs):
    """The run with the median CPU total (the lower middle one for an even count), with every
    run's total beside it."""
    ordered = sorted(runs, key=lambda r: r["cpu_total"])
    r = ordered[(len(ordered) - 1) // 2]
    if len(runs) > 1:
        r["cpu_total_runs"] = [x["cpu_total"] for x in runs]
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release", help="directory of wrsrvd, wrclient and examples/")
    ap.add_argument("--out", default="out/bench-vs-waypipe", help="where results.md/.json and the chart go")
    ap.add_argument("--only", default=",".join(ALL_WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of the timed workloads")
    ap.add_argument("--no-zstd", action="store_true", help="skip the waypipe --compress=zstd=5 column")
    ap.add_argument("--no-loss", action="store_true", help="skip the delay/loss runs")
    ap.add_argument("--loss-only", action="store_true",
                    help="only the delay/loss runs through WayRay (no CPU runs, no waypipe)")
    ap.add_argument("--loss-conditions", default=None,
                    help="comma-separated LOSS:REORDER percentages of the delay/loss runs "
                         "(default: " + ",".join(f"{l}:{r}" for l, r in LOSS_CONDITIONS) + ")")
    ap.add_argument("--loss-repeat", type=int, default=1,
                    help="runs per delay/loss condition, run i with relay seed 42+i; the table "
                         "also shows the median p50/p95 latency over them")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="CPU runs per system and workload; the table shows the run with the "
                         "median CPU total (these machines are shared: one run can be off by half)")
    args = ap.parse_args()
    repeat = max(1, args.repeat)
    bins = os.path.abspath(args.bin)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="wayray-vs-waypipe-")
    wls = workloads(work, bins, args.seconds)
    names = [n for n in args.only.split(",") if n]
    for n in names:
        if n not in wls:
            raise BenchError(f"unknown workload {n!r} "
                             f"(have {', '.join(ALL_WORKLOADS + OPTIONAL_WORKLOADS)})")
    meta = {
        "repeat": repeat,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "waypipe": subprocess.run(["waypipe", "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0].replace("waypipe ", ""),
        "seconds": args.seconds, "work_dir": work,
    }
    results = []
    conditions = LOSS_CONDITIONS
    if args.loss_conditions:
        conditions = [tuple(int(x) for x in c.split(":")) for c in args.loss_conditions.split(",") if c]
    for n in ([] if args.loss_only else names):
        wl = wls[n]
        configs = [("wayray", "WayRay", ())]
        if n in LOSSLESS_BASELINE:
            configs.append(("wayray-lossless", "WayRay lossless (--no-video)", ("--no-video",)))
        configs.append(("waypipe", "waypipe lz4", None))
        if not args.no_zstd:
            configs.append(("waypipe-zstd", "waypipe zstd=5", "zstd=5"))
        entry = {"name": n, "title": wl.title, "runs": []}
        # `opt`: wrsrvd flags for WayRay runs, waypipe's --compress value for waypipe runs.
        for tag, label, opt in configs:
            print(f"==> {wl.title}: {label}", file=sys.stderr, flush=True)
            try:
                if tag.startswith("wayray"):
                    r = median_run([run_wayray(wl, bins, work, tag=f"{tag}-{i}" if i else tag,
                                               frame_log=False, server_args=opt)
                                    for i in range(repeat)])
                    # Frames shown need the appliance's frame log, whose digests cost CPU: a second
                    # run counts them, so the CPU figures above stay clean.
                    print(f"==> {wl.title}: {label} again with --frame-log (frames shown)",
                          file=sys.stderr, flush=True)
                    counted = run_wayray(wl, bins, work, tag=f"{tag}-frames", server_args=opt)
                    r["system"] = tag
                    r["frames_shown"] = counted["frames_shown"]
                    r["frames_run_client_commits"] = counted["client_commits"]
                    r["frames_run_cpu_client"] = counted["cpu_client"]
                else:
                    r = median_run([run_waypipe(wl, bins, work, opt, f"{tag}-{i}" if i else tag)
                                    for i in range(repeat)])
                    r["system"] = tag
            except Exception as e:  # one failed run must not lose the others' results
                print(f"bench-vs-waypipe: {wl.title} on {label} failed: {e}", file=sys.stderr)
                r = {"system": tag, "workload": n, "error": str(e) or repr(e)}
            finally:
                PROCS.stop_all()
            r["label"] = label
            entry["runs"].append(r)
        def run_of(system):
            return next((r for r in entry["runs"] if r["system"] == system and not r.get("error")), None)

        wr, wp = run_of("wayray"), run_of("waypipe")
        if wr and wp:
            entry["ratios"] = {k: ratio(wr[k], wp[k]) for k in ("bytes_total", "cpu_server", "cpu_client", "cpu_total")}
            entry["ratios"]["bytes"] = entry["ratios"].pop("bytes_total")
            for key, system in (("bytes_vs_zstd", "waypipe-zstd"), ("bytes_vs_lossless", "wayray-lossless")):
                other = run_of(system)
                entry["ratios"][key] = ratio(wr["bytes_total"], other["bytes_total"]) if other else None
        results.append(entry)
    loss = []
    if not args.no_loss:
        for n in [n for n in ("typing", "scroll") if n in names]:
            # Delay and jitter alone first, then with reordering, then with loss as well.
            for (pct_loss, pct_reorder), rep in [(c, i) for c in conditions
                                                 for i in range(max(1, args.loss_repeat))]:
                print(f"==> {wls[n].title}: WayRay, 20 ms RTT, {pct_loss} % loss, "
                      f"{pct_reorder} % reordering (run {rep + 1})", file=sys.stderr, flush=True)
                impair = ["--delay-ms", "10", "--jitter-ms", "3", "--loss", str(pct_loss),
                          "--reorder", str(pct_reorder), "--seed", str(42 + rep)]
                try:
                    r = run_wayray(wls[n], bins, work, impair, tag=f"loss{pct_loss}-reorder{pct_reorder}-{rep}", server_frames=True)
                except Exception as e:  # as above
                    print(f"bench-vs-waypipe: loss run failed: {e}", file=sys.stderr)
                    r = {"workload": n, "error": str(e) or repr(e)}
                finally:
                    PROCS.stop_all()
                r["loss_pct"] = pct_loss
                r["reorder_pct"] = pct_reorder
                r["seed"] = 42 + rep
                loss.append(r)
    md = report(results, loss, meta)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "workloads": results, "loss": loss}, f, indent=1)
    print(md)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs kept in {work}", file=sys.stderr)
    failed = [r for wl in results for r in wl["runs"] if r.get("error")] + [r for r in loss if r.get("error")]
    return 1 if failed else 0


def on_signal(signum, _frame):
    PROCS.stop_all()
    sys.exit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench-vs-waypipe: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        PROCS.stop_all()
