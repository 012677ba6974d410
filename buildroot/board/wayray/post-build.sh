#!/bin/sh
# Post-build script of the WayRay appliance images (BR2_ROOTFS_POST_BUILD_SCRIPT).
# Runs after the rootfs overlay is copied into $TARGET_DIR ($1 is $TARGET_DIR).
set -u
set -e

TARGET_DIR=${TARGET_DIR:-$1}

# The screen belongs to wrclient: no login prompt on it (Buildroot's QEMU and
# Raspberry Pi boards add a getty on tty1; the login stays on the serial port).
if [ -e "$TARGET_DIR/etc/inittab" ]; then
	sed -i '/^tty1::/d' "$TARGET_DIR/etc/inittab"
fi

# State that must survive a reboot (certificates of servers trusted on first use).
mkdir -p "$TARGET_DIR/var/lib/wayray-appliance"
chmod 700 "$TARGET_DIR/var/lib/wayray-appliance"

# The overlay's scripts must stay executable whatever the checkout did to modes.
chmod 755 "$TARGET_DIR/etc/init.d/S90wayray" "$TARGET_DIR/etc/init.d/S50pcscd"

# The firmware itself must be there (the package is selected in our defconfigs).
if [ ! -x "$TARGET_DIR/usr/bin/wrclient" ]; then
	echo "post-build: $TARGET_DIR/usr/bin/wrclient is missing (BR2_PACKAGE_WAYRAY_APPLIANCE?)" >&2
	exit 1
fi
