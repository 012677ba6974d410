#!/bin/sh
# /usr/sbin/wayray-pcscd of the appliance image (busybox sh): starts pcscd, the PC/SC daemon that
# owns the smart-card readers (USB CCID readers through the ccid driver), as a daemon.
#
#   wayray-pcscd start     start it (/init, before wrclient)
#   wayray-pcscd restart   stop it and start it again (wayray-uevent, when a reader comes or goes)
#
# pcscd logs to syslog at info level (busybox syslogd, which /init points at the console). A
# failure is logged and ignored: the appliance works without smart cards.
log() { echo "wayray-pcscd: [$(cut -d' ' -f1 /proc/uptime)] $*"; }

stop() {
    pid="$(cat /run/pcscd/pcscd.pid 2>/dev/null || pidof pcscd)"
    [ -n "$pid" ] || return 0
    # shellcheck disable=SC2086  # pidof may name more than one
    kill $pid 2>/dev/null
    i=0
    # shellcheck disable=SC2086
    while kill -0 $pid 2>/dev/null; do
        if [ $i -ge 30 ]; then
            log "pcscd (pid $pid) did not stop within 3 s; killing it"
            # shellcheck disable=SC2086
            kill -9 $pid 2>/dev/null
            sleep 0.2
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    rm -f /run/pcscd/pcscd.pid /run/pcscd/pcscd.comm
}

start() {
    mkdir -p /run/pcscd /run/wayray
    : >/run/wayray/pcscd.enabled
    # Without --foreground pcscd forks, and its parent exits once the daemon is ready (or not).
    pcscd --info
    rc=$?
    pid="$(pidof pcscd)"
    if [ "$rc" -eq 0 ] && [ -n "$pid" ]; then
        log "pcscd running (pid $pid)"
    else
        log "pcscd failed to start (exit status $rc); smart-card readers will not work, booting on"
        return 1
    fi
}

case "${1:-}" in
    start) start ;;
    restart)
        # Not before /init has started it once: its start-up scan will find the reader anyway.
        [ -e /run/wayray/pcscd.enabled ] || exit 0
        stop
        start
        ;;
    *) echo "usage: wayray-pcscd start|restart" >&2; exit 2 ;;
esac
