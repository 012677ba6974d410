#!/usr/bin/env bash
# USB forwarding throughput (issue 21): sequential read and write of a USB stick forwarded from
# the appliance guest to the server guest (vhci-hcd), against the same kind of stick (QEMU
# usb-storage on qemu-xhci, same image size) plugged straight into the server guest, measured
# in one run inside the same guest kernel: ratio forwarded/local per round, median of ROUNDS=3.
# dd with O_DIRECT on the raw block devices, BLOCK_MIB=1 blocks, SIZE_MIB=32 per transfer. The
# server guest runs the release wrsrvd, the appliance image its release wrclient.
#
# Both guests emulate QEMU's `-cpu max` (WAYRAY_BENCH_CPU): x86 CPUs of the last decade and most
# ARMv8 thin-client SoCs have AES instructions, and without them TLS is done in software under TCG.
#
# The local stick sits in the server guest, not the appliance guest: the appliance image has no
# shell to run dd in, and in the server guest both sticks are read by the same kernel, the same
# dd, on the same (TCG) CPU, so the ratio is what forwarding costs.
#
#   scripts/bench-usb.sh [--no-build]     (scripts/bench usb)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
repo="$PWD"
started=$SECONDS
rounds="${ROUNDS:-3}"
size_mib="${SIZE_MIB:-32}"
block_mib="${BLOCK_MIB:-1}"

if [ "${1:-}" != --no-build ]; then
    ensure_rust
    ensure_packages "${WAYRAY_BUILD_PACKAGES[@]}" "${WAYRAY_IMAGE_PACKAGES[@]}"
    cargo build --workspace --bins --examples --locked
    cargo build --release --locked -p wayray-server --bin wrsrvd
    cargo build --release --locked -p wayray-transport --example quic_bulk
    image/build
fi
bin="${CARGO_TARGET_DIR:-target}/debug"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
# The release wrsrvd relays (a debug build's QUIC under TCG is the bottleneck otherwise); the
# session's client is the debug input_probe.
server_bin="${bin%/debug}/release"
for f in "$server_bin/wrsrvd" "$server_bin/examples/quic_bulk"; do
    [ -x "$f" ] || { echo "bench-usb: no $f (run without --no-build)" >&2; exit 1; }
done
out="$repo/out/bench-usb"
rm -rf "$out"
share="$out/share"
mkdir -p "$share/cmd"
port=$((20000 + $$ % 20000))
stick="$out/stick.img"
truncate -s 128M "$stick"
truncate -s 128M "$out/local.img"
server_qemu_args=(--qemu-arg -device --qemu-arg qemu-xhci,id=lxhci
    --qemu-arg -drive --qemu-arg "if=none,id=localdrive,format=raw,file=$out/local.img"
    --qemu-arg -device --qemu-arg usb-storage,bus=lxhci.0,drive=localdrive,serial=WRLOCAL1)
guest_cpu="${WAYRAY_BENCH_CPU:-max}"
source scripts/usb-guests.sh

ensure_daemon_user
: >"$share/wrsrvd.toml"
start_server_guest
start_appliance_guest
wait_file "$share/wrsrvd.log" '46f4:0001.*USB device attached' 180 "the stick attached"
# One round: read and write of each stick; "NAME MB/s" lines.
cat >"$share/round.sh" <<EOF
set -e
fwd=""; loc=""
for i in \$(seq 100); do
    for b in /sys/block/sd*; do
        [ -e "\$b" ] || continue
        case "\$(readlink -f "\$b")" in *vhci_hcd*) fwd=\${b##*/} ;; *) loc=\${b##*/} ;; esac
    done
    [ -n "\$fwd" ] && [ -n "\$loc" ] && break
    sleep 0.2
done
[ -n "\$fwd" ] && [ -n "\$loc" ] || { echo "no forwarded (\$fwd) or local (\$loc) stick"; exit 1; }
rate() { sed -n 's/^\([0-9]*\) bytes.* copied, \([0-9.]*\) s.*/\1 \2/p' | awk '{ printf "%.2f", \$1 / \$2 / 1e6 }'; }
for dev in \$fwd \$loc; do
    r=\$(dd if=/dev/\$dev of=/dev/null bs=${block_mib}M count=$((size_mib / block_mib)) iflag=direct 2>&1 | rate)
    w=\$(dd if=/dev/zero of=/dev/\$dev bs=${block_mib}M count=$((size_mib / block_mib)) oflag=direct conv=fsync 2>&1 | rate)
    [ "\$dev" = "\$fwd" ] && echo "forwarded \$r \$w" || echo "local \$r \$w"
done
# UDP datagrams the server guest's kernel dropped for a full socket buffer (so far).
awk '/^Udp:/ { if (!seen) { seen = 1; split(\$0, h); next } for (i = 2; i <= NF; i++) if (h[i] == "RcvbufErrors") print "udp-rcvbuf-errors", \$i }' /proc/net/snmp
EOF
results="$out/rounds.txt"
: >"$results"
for r in $(seq "$rounds"); do
    guest "round$r" 600 <<<"sh $share/round.sh" >>"$results" || fail "round $r failed: $(cat "$share/cmd/round$r.out")"
done
# The ceiling QUIC itself sets: the same bytes through WayRay's QUIC settings and TLS, with no
# USB on either end, both ends in the server guest (one emulated CPU doing both halves), and
# natively on this machine (no emulation).
quic_mib=$((size_mib / 2))
guest quic 600 <<<"$server_bin/examples/quic_bulk --megabytes $quic_mib --repeat $rounds" >"$out/quic-guest.txt" \
    || fail "quic_bulk failed in the server guest: $(cat "$out/quic-guest.txt")"
"$server_bin/examples/quic_bulk" --megabytes $((size_mib * 4)) --repeat "$rounds" >"$out/quic-native.txt"
python3 - "$results" "$rounds" "$size_mib" "$block_mib" "$((SECONDS - started))" "$out/quic-guest.txt" "$out/quic-native.txt" <<'PY'
import statistics, sys
path, rounds, size, block, wall, quic_guest, quic_native = sys.argv[1:]
def quic(path):
    values = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 3 and parts[1] == "MB/s":
            values[parts[0]] = float(parts[2])
    return values
qg, qn = quic(quic_guest), quic(quic_native)
lines = [l.split() for l in open(path) if l.strip()]
fwd = [tuple(map(float, l[1:])) for l in lines if l[0] == "forwarded"]
loc = [tuple(map(float, l[1:])) for l in lines if l[0] == "local"]
rr = [f[0] / l[0] for f, l in zip(fwd, loc)]
wr = [f[1] / l[1] for f, l in zip(fwd, loc)]
med = statistics.median
print(f"\n### USB stick throughput, forwarded (appliance guest -> QUIC -> vhci-hcd) vs local, server guest ({rounds} rounds, {size} MiB, {block} MiB O_DIRECT blocks)\n")
print("| | forwarded MB/s | local MB/s | ratio (median of per-round ratios) |")
print("|---|---|---|---|")
print(f"| sequential read | {med([f[0] for f in fwd]):.2f} | {med([l[0] for l in loc]):.2f} | {med(rr):.2f} |")
print(f"| sequential write | {med([f[1] for f in fwd]):.2f} | {med([l[1] for l in loc]):.2f} | {med(wr):.2f} |")
print(f"\n### The same bytes through QUIC alone (quic_bulk: WayRay's QUIC settings and TLS, no USB; median of {rounds})\n")
print("| | stream MB/s | one 120 KiB request at a time MB/s |")
print("|---|---|---|")
print(f"| both ends in the server guest (one emulated CPU) | {qg['stream']:.2f} | {qg['request']:.2f} |")
print(f"| both ends on this machine, natively | {qn['stream']:.2f} | {qn['request']:.2f} |")
print(f"\nforwarded read / QUIC alone in the guest (requests): {med([f[0] for f in fwd]) / qg['request']:.2f}; emulation slowdown of QUIC itself (native / guest, requests): {qn['request'] / qg['request']:.0f}x")
drops = [int(l[1]) for l in lines if l[0] == "udp-rcvbuf-errors"]
if drops:
    print(f"\nUDP datagrams the server guest dropped for a full socket buffer: {drops[-1]}")
print(f"\nper-round ratios: read {', '.join(f'{x:.2f}' for x in rr)}; write {', '.join(f'{x:.2f}' for x in wr)}; wall time {wall} s")
PY
