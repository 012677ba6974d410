################################################################################
#
# wayray-appliance
#
################################################################################

# Built from the WayRay source tree this BR2_EXTERNAL lives in (buildroot/ is
# one level below the workspace root). Version: the workspace's.
WAYRAY_APPLIANCE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' \
	$(BR2_EXTERNAL_WAYRAY_PATH)/../Cargo.toml | head -n 1)
WAYRAY_APPLIANCE_SITE = $(BR2_EXTERNAL_WAYRAY_PATH)/..
WAYRAY_APPLIANCE_SITE_METHOD = local
WAYRAY_APPLIANCE_LICENSE = MIT or Apache-2.0

# A workspace member: cargo runs in appliance/ (the package of the wrclient
# binary, so "cargo build" builds only it and "cargo install --path ./" has a
# package manifest), and finds the workspace root, its Cargo.lock and the
# vendored .cargo/config.toml one level up.
WAYRAY_APPLIANCE_SUBDIR = appliance
WAYRAY_APPLIANCE_CARGO_BUILD_OPTS = --bin wrclient

# Keep the host's build products out of the rsync of the source tree (target/
# alone can be many GB).
WAYRAY_APPLIANCE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/target --exclude=/out --exclude=/image/out \
	--exclude=/protocol/fuzz/target --exclude=/protocol/fuzz/corpus \
	--exclude=/protocol/fuzz/artifacts

# libxkbcommon, libinput, libseat (seatd), libpcsclite (pcsc-lite), libasound (alsa-lib: the
# speaker and the microphone) and libudev are linked; pkg-config
# finds them (the crates' build scripts accept Buildroot's PKG_CONFIG wrapper
# for cross builds). xkeyboard-config is the keymap data libxkbcommon reads
# at run time.
WAYRAY_APPLIANCE_DEPENDENCIES = \
	host-pkgconf \
	libxkbcommon \
	xkeyboard-config \
	libinput \
	pcsc-lite \
	alsa-lib \
	seatd \
	udev

# The cargo infrastructure vendors the crates in its download post-process,
# which does not run for SITE_METHOD = local (there is no download). So vendor
# here, before the build, the same way (VENDOR/ + .cargo/config.toml at the
# workspace root), with the same CARGO_HOME cache. This step needs to reach
# crates.io unless the crates are already in $(BR_CARGO_HOME); after it, the
# build itself runs with --offline --locked as usual.
define WAYRAY_APPLIANCE_CARGO_VENDOR
	mkdir -p $(BR_CARGO_HOME) $(@D)/.cargo
	cd $(@D) && \
	PATH=$(BR_PATH) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo vendor \
			--manifest-path Cargo.toml \
			--locked \
			VENDOR \
			> $(@D)/.cargo/config.toml
endef
WAYRAY_APPLIANCE_PRE_BUILD_HOOKS += WAYRAY_APPLIANCE_CARGO_VENDOR

$(eval $(cargo-package))
