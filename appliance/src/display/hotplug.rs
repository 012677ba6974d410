//! Displays plugged in, pulled out or swapped, as the kernel announces them. The appliance image
//! runs no udevd, so the appliance listens to the kernel's own uevents: a
//! `NETLINK_KOBJECT_UEVENT` socket bound to the kernel's multicast group, read through tokio.
//! Every `change` of a DRM device that carries `HOTPLUG=1` wakes [`Hotplug::next`], and the
//! display sink then looks at its connectors again ([`super::DisplaySink::rescan`]).
//!
//! A uevent is one datagram: a header `ACTION@DEVPATH`, then `KEY=VALUE` strings, each ended by
//! a NUL byte. Those of a monitor plugged into a card look like
//! `change@/devices/pci0000:00/0000:00:02.0/drm/card0`, `ACTION=change`, `DEVPATH=…`,
//! `SUBSYSTEM=drm`, `HOTPLUG=1`, `DEVNAME=dri/card0`, …

use std::future::pending;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Largest uevent the kernel sends is a few KiB (its environment buffer is 2 KiB).
const MAX_UEVENT: usize = 8192;

/// Wakes the appliance when a display may have changed.
pub struct Hotplug {
    socket: Option<AsyncFd<OwnedFd>>,
}

impl Hotplug {
    /// Never fires: for a display without hotplug (headless).
    pub fn none() -> Self {
        Self { socket: None }
    }

    /// Listens to the kernel's uevents. Must run inside the tokio runtime. Where the socket
    /// cannot be had (no netlink in this kernel or sandbox), the appliance goes on without
    /// hotplug: a display plugged in later is then only picked up by a restart.
    #[cfg(feature = "drm")]
    pub fn watch() -> Self {
        match netlink::open().and_then(register) {
            Ok(socket) => {
                tracing::debug!("listening for display hotplug uevents");
                Self {
                    socket: Some(socket),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for kernel uevents; displays plugged in later will not be noticed");
                Self::none()
            }
        }
    }

    /// Waits until the kernel reports a DRM hotplug; events queued behind it are taken with it,
    /// so a burst means one rescan. Cancel-safe (nothing is awaited between receiving a
    /// datagram and returning), so it can sit in a `select!`. Pending forever without a socket.
    pub async fn next(&mut self) {
        loop {
            let Some(socket) = &self.socket else {
                return pending().await;
            };
            match wait_for_hotplug(socket).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read kernel uevents; display hotplug is off");
                    self.socket = None;
                }
            }
        }
    }
}

/// Hands `socket` to tokio's reactor, which wakes [`Hotplug::next`] when a datagram is queued.
/// (The USB watcher, `crate::usb::watch`, registers its own uevent socket the same way.)
pub(crate) fn register(socket: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is an open descriptor that stays open, naming the same socket, until
    // it is dropped, which only the `AsyncFd` owning it does.
    let registered = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
    Ok(registered?)
}

async fn wait_for_hotplug(socket: &AsyncFd<OwnedFd>) -> std::io::Result<()> {
    let mut buffer = vec![0u8; MAX_UEVENT];
    loop {
        let mut ready = socket.readable().await?;
        let mut hotplug = false;
        // Everything queued now; the socket is non-blocking, so this ends with WouldBlock.
        loop {
            match netlink::receive(ready.get_inner(), &mut buffer) {
                Ok(Received::Datagram(len)) => {
                    if let Some(event) = Uevent::parse(&buffer[..len]) {
                        tracing::trace!(action = event.action, devpath = event.devpath, "uevent");
                        hotplug |= event.is_drm_hotplug();
                    }
                }
                Ok(Received::Foreign) => {}
                // The socket's queue overflowed: a hotplug may be among what was lost.
                Ok(Received::Overflow) => {
                    tracing::debug!("uevents were lost; looking at the displays anyway");
                    hotplug = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if hotplug {
            return Ok(());
        }
    }
}

/// What one receive got.
pub(crate) enum Received {
    /// A datagram of this many bytes (truncated to the buffer) from the kernel.
    Datagram(usize),
    /// A datagram from a process, not the kernel: ignored.
    Foreign,
    /// Datagrams were dropped because the appliance did not read them in time.
    Overflow,
}

/// The kernel's uevent socket, shared with the USB watcher (`crate::usb::watch`).
pub(crate) mod netlink {
    use std::os::fd::{AsFd, OwnedFd};

    use rustix::io::Errno;
    use rustix::net::netlink::{SocketAddrNetlink, KOBJECT_UEVENT};
    use rustix::net::{
        bind, recvfrom, socket_with, AddressFamily, RecvFlags, SocketFlags, SocketType,
    };

    use super::Received;

    /// The kernel's multicast group for uevents (udevd rebroadcasts on group 2, absent here).
    const KERNEL_GROUP: u32 = 1;

    pub fn open() -> std::io::Result<OwnedFd> {
        let socket = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(KOBJECT_UEVENT),
        )?;
        // Port 0: the kernel assigns one.
        bind(&socket, &SocketAddrNetlink::new(0, KERNEL_GROUP))?;
        Ok(socket)
    }

    pub fn receive(socket: &impl AsFd, buffer: &mut [u8]) -> std::io::Result<Received> {
        let (_, len, from) = match recvfrom(socket, &mut *buffer, RecvFlags::DONTWAIT) {
            Ok(received) => received,
            Err(Errno::NOBUFS) => return Ok(Received::Overflow),
            Err(e) => return Err(e.into()),
        };
        // Only the kernel (port 0) sends uevents on its group; a netlink datagram from anyone
        // else is not one.
        let from_process = from
            .and_then(|from| SocketAddrNetlink::try_from(from).ok())
            .is_some_and(|from| from.pid() != 0);
        Ok(if from_process {
            Received::Foreign
        } else {
            Received::Datagram(len.min(buffer.len()))
        })
    }
}

/// One kernel uevent, borrowed from its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent<'a> {
    pub action: &'a str,
    pub devpath: &'a str,
    vars: Vec<(&'a str, &'a str)>,
}

impl<'a> Uevent<'a> {
    /// Parses a datagram from the kernel; `None` if it is not a uevent (udevd's `libudev`
    /// messages, say). Strings that are not UTF-8 or not `KEY=VALUE` are skipped.
    pub fn parse(datagram: &'a [u8]) -> Option<Self> {
        let mut strings = datagram
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| std::str::from_utf8(s).ok());
        let (action, devpath) = strings.next()?.split_once('@')?;
        if action.is_empty() || !devpath.starts_with('/') {
            return None;
        }
        let vars = strings.filter_map(|s| s.split_once('=')).collect();
        Some(Self {
            action,
            devpath,
            vars,
        })
    }

    /// The value of `key`, if the event carries it.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A DRM device reports that a connector's state may have changed.
    pub fn is_drm_hotplug(&self) -> bool {
        let action = self.get("ACTION").unwrap_or(self.action);
        action == "change"
            && self.get("SUBSYSTEM") == Some("drm")
            && self.get("HOTPLUG") == Some("1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(strings: &[&str]) -> Vec<u8> {
        strings.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    const CARD0: &str = "/devices/pci0000:00/0000:00:02.0/drm/card0";

    fn hotplug_datagram() -> Vec<u8> {
        datagram(&[
            &format!("change@{CARD0}"),
            "ACTION=change",
            &format!("DEVPATH={CARD0}"),
            "SUBSYSTEM=drm",
            "HOTPLUG=1",
            "CONNECTOR=95",
            "DEVNAME=dri/card0",
            "DEVTYPE=drm_minor",
            "SEQNUM=2841",
            "MAJOR=226",
            "MINOR=0",
        ])
    }

    #[test]
    fn a_drm_hotplug_is_recognised() {
        let bytes = hotplug_datagram();
        let event = Uevent::parse(&bytes).unwrap();
        assert_eq!(event.action, "change");
        assert_eq!(event.devpath, CARD0);
        assert_eq!(event.get("SUBSYSTEM"), Some("drm"));
        assert_eq!(event.get("CONNECTOR"), Some("95"));
        assert_eq!(event.get("NOPE"), None);
        assert!(event.is_drm_hotplug());
    }

    #[test]
    fn other_uevents_are_not_hotplugs() {
        let cases = [
            // A keyboard plugged in.
            datagram(&[
                "add@/devices/pci0000:00/usb1/1-1/1-1:1.0/input/input7",
                "ACTION=add",
                "SUBSYSTEM=input",
            ]),
            // A DRM device appearing, or changing without a hotplug (a lease).
            datagram(&[&format!("add@{CARD0}"), "ACTION=add", "SUBSYSTEM=drm"]),
            datagram(&[
                &format!("change@{CARD0}"),
                "ACTION=change",
                "SUBSYSTEM=drm",
                "LEASE=1",
            ]),
            datagram(&[
                &format!("change@{CARD0}"),
                "ACTION=change",
                "SUBSYSTEM=drm",
                "HOTPLUG=0",
            ]),
        ];
        for bytes in cases {
            let event = Uevent::parse(&bytes).unwrap();
            assert!(!event.is_drm_hotplug(), "{event:?}");
        }
    }

    #[test]
    fn what_is_not_a_uevent_is_refused_without_panicking() {
        // udevd's rebroadcast: a binary header after "libudev".
        let mut libudev = b"libudev\0\xfe\xed\xca\xfe\x00\x00".to_vec();
        libudev.extend(hotplug_datagram());
        assert_eq!(Uevent::parse(&libudev), None);
        for bytes in [
            &b""[..],
            b"\0\0",
            b"change",
            b"@/devices",
            b"change@nopath\0",
        ] {
            assert_eq!(Uevent::parse(bytes), None, "{bytes:?}");
        }
        // Junk among the variables is skipped; the rest still counts. No trailing NUL is fine.
        let mut bytes = datagram(&[&format!("change@{CARD0}"), "SUBSYSTEM=drm", "junk"]);
        bytes.extend(b"\xff\xfe\0HOTPLUG=1");
        let event = Uevent::parse(&bytes).unwrap();
        assert!(event.is_drm_hotplug(), "{event:?}");
    }

    /// The reading side, fed through a datagram socket pair instead of the kernel.
    #[cfg(feature = "drm")]
    #[tokio::test]
    async fn next_wakes_for_a_hotplug_and_takes_a_burst_at_once() {
        use std::time::Duration;

        use rustix::net::{send, socketpair, AddressFamily, SendFlags, SocketFlags, SocketType};

        let (ours, kernel) = socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        let mut hotplug = Hotplug {
            socket: Some(register(ours).unwrap()),
        };
        let quiet = Duration::from_millis(100);
        let keyboard = datagram(&["add@/devices/input/input7", "SUBSYSTEM=input"]);
        send(&kernel, &keyboard, SendFlags::empty()).unwrap();
        let woke = tokio::time::timeout(quiet, hotplug.next()).await;
        assert!(woke.is_err(), "woke for a keyboard");

        for _ in 0..3 {
            send(&kernel, &hotplug_datagram(), SendFlags::empty()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), hotplug.next())
            .await
            .expect("a hotplug wakes it");
        // The two behind it were taken along.
        let woke = tokio::time::timeout(quiet, hotplug.next()).await;
        assert!(woke.is_err(), "woke again for the same burst");
    }

    #[cfg(feature = "drm")]
    #[tokio::test]
    async fn without_a_socket_next_never_fires() {
        let mut hotplug = Hotplug::none();
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), hotplug.next()).await;
        assert!(woke.is_err());
    }
}
