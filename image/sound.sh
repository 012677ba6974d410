#!/bin/sh
# /usr/sbin/wayray-sound of the appliance image (busybox sh): sets up a sound card the kernel has
# registered. ALSA drivers start with their outputs muted (or at 0 volume); on a desktop,
# alsa-utils' udev rule runs `alsactl restore`/`alsactl init` when a card appears. Here there is
# no saved state and no udevd, so /init runs this for the cards present when it starts and
# wayray-uevent for cards that come later (HDA codecs probed late, USB audio plugged in):
#
#   wayray-sound init N    `alsactl init N`: unmute card N, playback at the init database's
#                          level (-20 dB master, 0 dB PCM), capture on
#
# The session's own volume (its sink in PipeWire) is what the user turns; the card's mixer stays
# where this leaves it. Logs one line per card to the console.
log() { echo "wayray-sound: [$(cut -d' ' -f1 /proc/uptime)] $*"; }

[ "$1" = init ] && [ -n "$2" ] || { echo "usage: wayray-sound init CARD_NUMBER" >&2; exit 2; }
n="$2"
dir="/proc/asound/card$n"
[ -d "$dir" ] || { log "no sound card $n"; exit 1; }
# Once per card and boot (the uevent and /init's scan may both see it).
mkdir -p /run/wayray
mkdir /run/wayray/sound-card$n 2>/dev/null || exit 0
id="$(cat "$dir/id" 2>/dev/null)"
name="$(sed -n "s/^ *$n \[[^]]*\]: //p" /proc/asound/cards | head -n1)"
pcms="$(cd "$dir" 2>/dev/null && for p in pcm*; do [ -d "$p" ] && printf ' %s' "$p"; done)"
# alsactl init exits 99 when it used its generic defaults (no card-specific entry): not an error.
out="$(alsactl init "$n" 2>&1)"
rc=$?
case $rc in
    0|99) log "card $n [$id] $name: devices${pcms:- none}; mixer initialised (alsactl init)" ;;
    *) log "card $n [$id] $name: devices${pcms:- none}; alsactl init failed ($rc): $(echo "$out" | tr '\n' ' ')" ;;
esac
