# Shared by scripts/*: installs what a fresh Debian machine lacks. Source it, don't run it.

# Packages to build the workspace (g++ and nasm: the openh264 crate builds OpenH264 from source,
# with its SIMD kernels when nasm is there).
WAYRAY_BUILD_PACKAGES=(pkg-config protobuf-compiler libpixman-1-dev libxkbcommon-dev libinput-dev libudev-dev libseat-dev
    libpcsclite-dev libsqlite3-dev libpam0g-dev libclang-dev g++ nasm
    libpipewire-0.3-dev libspa-0.2-dev libopus-dev libasound2-dev)
# Real Wayland (and X11, through Xwayland) clients the tests and the demo run inside wrsrvd.
WAYRAY_CLIENT_PACKAGES=(foot weston wayland-utils fonts-dejavu-core dmz-cursor-theme xwayland xterm
    xclip wl-clipboard swaylock swayidle)
# The default desktop (wallpaper, panel, notifications, launcher) and its session bus; each
# session's own sound server (PipeWire, WirePlumber, pipewire-pulse), `paplay`/`pactl`, and
# ALSA's pulse plugin through which ALSA programs reach it.
WAYRAY_DESKTOP_PACKAGES=(swaybg waybar mako-notifier libnotify-bin fuzzel dbus-daemon
    pipewire wireplumber pipewire-pulse pulseaudio-utils libasound2-plugins)
# Real applications the end-to-end tests run in a session: browsers, GTK 4 and Qt 6 (the
# toolkit probes in server/tests/apps are Python: PyGObject and PyQt6).
WAYRAY_APP_PACKAGES=(firefox-esr chromium gtk-4-examples python3-gi gir1.2-gtk-4.0 python3-pyqt6
    qt6-wayland)
# Smart cards (real pcscd with vsmartcard's virtual readers; opensc-tool as a PC/SC program in
# the session) and PAM for the session tests.
WAYRAY_SESSION_PACKAGES=(pcscd pcsc-tools vsmartcard-vpcd opensc pamtester sox etcd-server etcd-client)
# The appliance image (image/build) and booting it in QEMU (scripts/qemu-appliance, test-qemu;
# sox makes the test tones that scripts/tone.py checks).
WAYRAY_IMAGE_PACKAGES=(kmod cpio zstd xkb-data libinput-bin syslinux syslinux-common mtools dosfstools
    fdisk qemu-system-x86 socat iproute2 python3 sox sqlite3)

# ensure_packages PKG... : apt-get installs the ones not yet installed (needs root).
ensure_packages() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        echo "cargo not found: install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
}

# A private XDG_RUNTIME_DIR when the caller has none (root shells, CI).
ensure_runtime_dir() {
    if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
        export XDG_RUNTIME_DIR="/tmp/wayray-runtime-$(id -u)"
        mkdir -p "$XDG_RUNTIME_DIR"
        chmod 700 "$XDG_RUNTIME_DIR"
    fi
}

# ensure_pam_service: /etc/pam.d/wayray, the PAM service wrsessd authenticates with (pam_unix;
# `nodelay` so a wrong password in tests costs no 2 s) and opens users' sessions with (pam_limits).
# An existing file is left alone.
ensure_pam_service() {
    if [ ! -e /etc/pam.d/wayray ]; then
        printf 'auth required pam_unix.so nodelay\naccount required pam_unix.so\nsession required pam_limits.so\n' >/etc/pam.d/wayray
    fi
}

# ensure_daemon_user: the system user wrsrvd continues as once its sockets are open (config
# `user`, default "wayray"; README.md, "Confinement").
ensure_daemon_user() {
    if ! getent passwd wayray >/dev/null; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wayray
    fi
}

# ensure_pcscd: a running pcscd (with the vpcd virtual readers on TCP 35963/35964).
ensure_pcscd() {
    if [ ! -S /run/pcscd/pcscd.comm ]; then
        setsid pcscd -f -a >/tmp/wayray-pcscd.log 2>&1 < /dev/null &
        for _ in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
    fi
}

# ensure_desktop_config: the default desktop's configuration (server/desktop) where sessions
# look for it, /usr/share/wayray/desktop, refreshed on every run so it matches the checkout.
ensure_desktop_config() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo mkdir -p /usr/share/wayray/desktop
    $sudo cp -r server/desktop/. /usr/share/wayray/desktop/
}
