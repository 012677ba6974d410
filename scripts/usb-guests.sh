# Helpers of scripts/test-qemu-vhci and scripts/bench-usb.sh (sourced): a server guest
# (scripts/qemu-server-guest) running wrsrvd and the caller's commands, an appliance guest
# (scripts/qemu-appliance) with a USB stick, linked by a QEMU socket netdev on 127.0.0.1.
#
# The caller sets: repo, out, share (with share/cmd), bin, port, stick (the stick's image),
# started (SECONDS at its start); optional server_qemu_args (array: --qemu-arg ARG pairs for
# scripts/qemu-server-guest), server_bin (the directory of the wrsrvd to run; default $bin) and
# guest_cpu (a QEMU -cpu model for both guests; default QEMU's own).

server_qemu_args=("${server_qemu_args[@]}")
cpu_args=()
[ -z "${guest_cpu:-}" ] || cpu_args=(--qemu-arg -cpu --qemu-arg "$guest_cpu")

sg=""   # scripts/qemu-server-guest
qa=""   # scripts/qemu-appliance
cleanup() {
    trap - INT TERM
    touch "$share/stop" 2>/dev/null || true
    for p in $qa $sg; do kill "$p" 2>/dev/null || true; done
    for p in $qa $sg; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

strip_ansi() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }
fail() {
    echo "FAIL: $*" >&2
    echo "--- last 15 lines of wrsrvd's log in the server guest ($share/wrsrvd.log):" >&2
    strip_ansi "$share/wrsrvd.log" 2>/dev/null | tail -n 15 >&2 || true
    echo "--- last 15 lines of the server guest's console ($out/server/serial.log):" >&2
    tail -n 15 "$out/server/serial.log" >&2 2>/dev/null || true
    echo "--- last 20 lines of the appliance guest's console ($out/appliance/serial.log):" >&2
    strip_ansi "$out/appliance/serial.log" 2>/dev/null | grep -v wayray-rss | tail -n 20 >&2 || true
    exit 1
}
# wait_file FILE PATTERN SECONDS WHAT [N]: until FILE has N (default 1) lines matching PATTERN.
wait_file() {
    local file="$1" pattern="$2" deadline=$((SECONDS + $3)) what="$4" n="${5:-1}"
    while [ "$(strip_ansi "$file" 2>/dev/null | grep -cE "$pattern" || true)" -lt "$n" ]; do
        [ $SECONDS -lt $deadline ] || fail "no $what within $3 s"
        { [ -z "$sg" ] || kill -0 "$sg" 2>/dev/null; } || fail "the server guest ended before $what"
        sleep 0.2
    done
}
count() { strip_ansi "$1" 2>/dev/null | grep -cE "$2" || true; }
# guest NAME SECONDS < SCRIPT: runs SCRIPT (sh) in the server guest; its output on stdout, its
# status as ours.
guest() {
    local name="$1" deadline=$((SECONDS + $2)) f="$share/cmd/$1"
    cat >"$f.tmp"
    mv "$f.tmp" "$f.sh"
    while [ ! -e "$f.rc" ]; do
        [ $SECONDS -lt $deadline ] || fail "the server guest did not run '$name' within $2 s"
        kill -0 "$sg" 2>/dev/null || fail "the server guest ended before running '$name'"
        sleep 0.2
    done
    cat "$f.out"
    return "$(cat "$f.rc")"
}
monitor() {
    { printf '%s\n' "$1"; sleep 1; } | timeout 10 socat - "UNIX-CONNECT:$out/appliance/monitor.sock" >>"$out/monitor.log" 2>&1 \
        || fail "QEMU monitor command '$1' failed"
}
audit() {
    guest "audit-$1" 30 <<EOF
sqlite3 /tmp/wayray-state/sessions.db "SELECT event, user, detail FROM audit WHERE event LIKE 'usb_%' ORDER BY seq"
EOF
}

# start_server_guest: boots the server guest running wrsrvd (config $share/wrsrvd.toml, state in
# the guest's /tmp, the shared session showing input_probe) and an agent that runs the
# commands `guest` hands it; returns once wrsrvd listens and has vhci-hcd.
start_server_guest() {
    cat >"$share/agent.sh" <<EOF
# Runs in the server guest (chroot into this machine's /): wrsrvd, then the caller's commands.
export XDG_RUNTIME_DIR=/tmp/wayray-runtime-0
mkdir -p -m 700 "\$XDG_RUNTIME_DIR"
cd "$share"
RUST_LOG=info PATH="$bin/examples:\$PATH" "${server_bin:-$bin}/wrsrvd" --config "$share/wrsrvd.toml" \\
    --listen 10.78.0.1:7390 --api-listen off --appliance-auth open --state-dir /tmp/wayray-state \\
    --spawn "input_probe probe 600 400 3366cc" >"$share/wrsrvd.out" 2>"$share/wrsrvd.log" &
echo \$! >"$share/wrsrvd.pid"
while [ ! -e "$share/stop" ]; do
    for f in "$share"/cmd/*.sh; do
        [ -e "\$f" ] || continue
        run="\${f%.sh}.run"
        mv "\$f" "\$run"
        sh "\$run" >"\${f%.sh}.out" 2>&1
        echo \$? >"\${f%.sh}.rc.tmp"
        mv "\${f%.sh}.rc.tmp" "\${f%.sh}.rc"
    done
    sleep 0.2
done
kill "\$(cat "$share/wrsrvd.pid")"
wait
EOF
    echo "==> server guest (vhci-hcd; this machine's wrsrvd over 9p; link on 127.0.0.1:$port)"
    scripts/qemu-server-guest --out "$out/server" --share "$share" --script "$share/agent.sh" --port "$port" \
        "${server_qemu_args[@]}" "${cpu_args[@]}" >"$out/server-guest.log" 2>&1 &
    sg=$!
    wait_file "$out/server/serial.log" 'server-guest: .*ready: .*vhci-hcd yes' 90 "server guest with vhci-hcd"
    wait_file "$share/wrsrvd.out" '^WAYRAY_LISTEN=' 120 "wrsrvd listening in the server guest"
    wait_file "$share/wrsrvd.log" 'USB forwarding through vhci-hcd' 10 "'USB forwarding through vhci-hcd' in wrsrvd's log"
}

# start_appliance_guest: boots the appliance image against the server guest, with qemu-xhci
# carrying the stick ($stick as usb-storage "stick"), a usb-kbd and a usb-ccid.
start_appliance_guest() {
    scripts/qemu-appliance --net "socket:127.0.0.1:$port" --server 10.78.0.1:7390 --out "$out/appliance" \
        --timeout 900 --append "wayray.rss=0 wayray.log=info,libseat=warn" \
        --qemu-arg -device --qemu-arg qemu-xhci,id=xhci \
        --qemu-arg -drive --qemu-arg "if=none,id=stickdrive,format=raw,file=$stick" \
        --qemu-arg -device --qemu-arg usb-storage,id=stick,bus=xhci.0,drive=stickdrive,serial=WRSTICK1 \
        --qemu-arg -device --qemu-arg usb-kbd,id=kbd,bus=xhci.0 \
        --qemu-arg -device --qemu-arg usb-ccid,id=ccid,bus=xhci.0 "${cpu_args[@]}" \
        >"$out/qemu-appliance.log" 2>&1 &
    qa=$!
}
