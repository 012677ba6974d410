#!/usr/bin/env python3
"""PC/SC in the session (called by `scripts/bench pcsc`; needs root, pcscd with vsmartcard-vpcd,
and the binaries and examples in BIN, default target/release).

Real parts only: wrsrvd with its shared session, one wrclient following the vpcd reader
"Virtual PCD 00 00" with our virtual card in it. The same client (examples/pcsc_probe, linked
against the system's libpcsclite) sends the same APDU N times (APDUS=N, default 200) to the card

  local:    straight to pcscd, as a program on the appliance would
  session:  through the session's PC/SC socket (PCSCLITE_CSOCK_NAME): daemon -> QUIC stream ->
            appliance -> its pcscd -> card, and back

alternating RUNS times (default 5), each time as a bare SCardTransmit and as OpenSC sends an
APDU (inside a transaction: three round trips). Prints the median of the runs' median
round-trip times and the ratio session/local measured in the same run.
"""

import glob, os, re, statistics, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
APDUS = int(os.environ.get("APDUS", "200"))
RUNS = int(os.environ.get("RUNS", "5"))
ATR = "3B8F8001804F0CA000000306030001000000006A"
READER, PORT = "Virtual PCD 00 00", "35963"
GET_UID = "FFCA000000"

procs = []


def spawn(args, log, env=None):
    e = dict(os.environ, RUST_LOG="info")
    e.update(env or {})
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(log, "w") if log else subprocess.DEVNULL,
                         env=e, text=True)
    procs.append(p)
    return p


LOGS = []


def wait(what, cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    for log in LOGS:
        try:
            print(f"--- {log}\n" + open(log, errors="replace").read()[-3000:], file=sys.stderr)
        except FileNotFoundError:
            pass
    sys.exit(f"timed out waiting for {what}")


def probe(socket, transaction):
    env = dict(os.environ)
    env.pop("PCSCLITE_CSOCK_NAME", None)
    if socket:
        env["PCSCLITE_CSOCK_NAME"] = socket
    args = [f"{BIN}/examples/pcsc_probe", "apdu", GET_UID, "--reader", READER, "--repeat", str(APDUS)]
    if transaction:
        args.append("--transaction")
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    m = re.search(r"^rtt_us (\d+) (\d+) (\d+)$", out.stdout, re.M)
    if out.returncode != 0 or not m or "04A1B2C39000" not in out.stdout:
        sys.exit(f"pcsc_probe failed ({'session' if socket else 'local'}):\n{out.stdout}\n{out.stderr}")
    return int(m.group(1))


def main():
    work = tempfile.mkdtemp(prefix="wayray-bench-pcsc-")
    # The daemon leaves root: it must still reach its run dir (and the PC/SC sockets in it).
    os.chmod(work, 0o755)
    run = f"{work}/run"
    LOGS.extend([f"{work}/server.log", f"{work}/a.log"])
    try:
        server = spawn([f"{BIN}/wrsrvd", "--listen", "127.0.0.1:0", "--api-listen", "off",
                        "--appliance-auth", "open", "--state-dir", f"{work}/state", "--run-dir", run],
                       f"{work}/server.log")
        listen = None
        end = time.monotonic() + 30
        while listen is None and time.monotonic() < end:
            line = server.stdout.readline()
            if line.startswith("WAYRAY_LISTEN="):
                listen = line.strip().split("=", 1)[1]
        if not listen:
            sys.exit("wrsrvd did not start")
        spawn([f"{BIN}/examples/vcard", "--port", PORT, "--atr", ATR, "--uid", "04A1B2C3"], "")
        with open(f"{work}/idle.script", "w") as f:
            f.write("wait 600000\n")
        spawn([f"{BIN}/wrclient", "--server", listen, "--state-dir", f"{work}/a-state", "--display", "headless",
               "--screen", "800x600", "--card-reader", READER, "--input-script", f"{work}/idle.script"],
              f"{work}/a.log")
        wait("the session's PC/SC socket", lambda: glob.glob(f"{run}/pcsc/*"))
        socket = glob.glob(f"{run}/pcsc/*")[0]

        def attached():
            try:
                out = subprocess.run([f"{BIN}/examples/pcsc_probe", "readers"], capture_output=True, text=True,
                                     env=dict(os.environ, PCSCLITE_CSOCK_NAME=socket), timeout=10)
                return READER in out.stdout
            except subprocess.TimeoutExpired:
                return False

        wait("the appliance's reader in the session", attached)

        def card_in():
            # pcscd notices the virtual card a poll after vcard connects to vpcd.
            env = dict(os.environ)
            env.pop("PCSCLITE_CSOCK_NAME", None)
            try:
                out = subprocess.run([f"{BIN}/examples/pcsc_probe", "apdu", GET_UID, "--reader", READER],
                                     capture_output=True, text=True, env=env, timeout=10)
                return out.returncode == 0
            except subprocess.TimeoutExpired:
                return False

        wait("the virtual card in the appliance's reader", card_in)
        rows = []
        for transaction in (False, True):
            local, session, ratios = [], [], []
            probe(None, transaction), probe(socket, transaction)  # warm-up
            for _ in range(RUNS):
                l = probe(None, transaction)
                s = probe(socket, transaction)
                local.append(l)
                session.append(s)
                ratios.append(s / l)
            rows.append((transaction, statistics.median(local), statistics.median(session),
                         statistics.median(ratios)))
        print()
        print(f"## APDU round trip: the session's PC/SC against the appliance's own "
              f"(loopback, GET DATA UID, {APDUS} APDUs x {RUNS} runs, medians)")
        print()
        print("| exchange | local µs | through the session µs | ratio |")
        print("|---|--:|--:|--:|")
        for transaction, l, s, r in rows:
            what = "transaction + APDU (as OpenSC)" if transaction else "bare SCardTransmit"
            print(f"| {what} | {l:.0f} | {s:.0f} | {r:.1f}× |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
