#!/bin/sh
# /usr/sbin/wayray-uevent of the appliance image (busybox sh): busybox `uevent` runs it for every
# kernel uevent, with the event in the environment (ACTION, SUBSYSTEM, DEVTYPE, INTERFACE, ...).
#
# Smart-card reader hotplug without udevd: pcscd (built with libudev) scans the USB bus when it
# starts, but learns about readers plugged in later only from udevd's netlink messages, which no
# one sends here (and `pcscd --hotplug` does nothing for USB in a libudev build). So when a USB
# interface of class 0x0b (CCID), or of a device the ccid driver lists by VID:PID, comes or goes,
# pcscd is restarted; its start-up scan then sees the readers as they are. PC/SC clients see
# SCARD_E_NO_SERVICE on their old context and establish a new one.
#
# Also what udev does for any device that comes later: load its driver by the device's modalias
# (a USB headset: snd-usb-audio, from modules.alias), and set up sound cards as they register
# (wayray-sound: unmute them; HDA cards register after their codecs are probed, often after /init
# looked).
if [ "$ACTION" = add ] && [ -n "$MODALIAS" ]; then
    modprobe -q "$MODALIAS"
fi
if [ "$ACTION" = add ] && [ "$SUBSYSTEM" = sound ]; then
    case "$DEVNAME" in
        snd/controlC*) exec /usr/sbin/wayray-sound init "${DEVNAME#snd/controlC}" ;;
    esac
fi
[ "$SUBSYSTEM" = usb ] && [ "$DEVTYPE" = usb_interface ] || exit 0
case "$ACTION" in add|remove) ;; *) exit 0 ;; esac

# PRODUCT=vid/pid/bcdDevice in hex without leading zeros; INTERFACE=class/subclass/protocol.
vid="${PRODUCT%%/*}"
pid="${PRODUCT#*/}"
pid="${pid%%/*}"
id="$(printf '%04x:%04x' "0x${vid:-0}" "0x${pid:-0}" 2>/dev/null)"
case "$INTERFACE" in
    11/*) ;;
    *) grep -qx "$id" /etc/wayray/ccid-readers 2>/dev/null || exit 0 ;;
esac

if [ "$ACTION" = add ]; then what=added; else what=removed; fi
echo "wayray-uevent: [$(cut -d' ' -f1 /proc/uptime)] smart-card reader $id $what ($DEVPATH); restarting pcscd"
exec /usr/sbin/wayray-pcscd restart
