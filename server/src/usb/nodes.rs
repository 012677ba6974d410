//! Device nodes of forwarded devices belong to the session's user: kernel uevents for anything
//! below a vhci port (the USB device itself, its interfaces' `/dev/bus/usb`, `/dev/sdX`,
//! `/dev/hidrawN`, …) have their `/dev` node handed to that user, mode 0600, so no other
//! session's user (nor the `disk` group) opens them.
//!
//! The kernel's own uevents (netlink group 1) come where no udev runs (devtmpfs has created the
//! node before the event is sent). On a server running udev, udev handles the same event and
//! applies its rules (its defaults give block devices to group `disk`, mode 0660), possibly after
//! us: so udev's own events (group 2, sent once its rules ran) are handled too, and the node is
//! handed to the user again.
//!
//! The daemon leaves root after start-up; handing a root-owned node to another user needs
//! `CAP_CHOWN` and `CAP_FOWNER`. So the watcher runs on a thread of its own which keeps exactly
//! those two capabilities over the switch ([`Keeper::settle`]); every other thread of the daemon
//! keeps none, and the capabilities are never inheritable, so no program the daemon starts gets
//! them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// The owner of the nodes under one vhci port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOwner {
    pub uid: u32,
    pub gid: u32,
}

/// Device path prefix (`/devices/platform/vhci_hcd.0/usb3/3-1`) → owner.
#[derive(Debug, Default, Clone)]
pub struct Owners(Arc<Mutex<HashMap<String, NodeOwner>>>);

impl Owners {
    pub fn insert(&self, devpath: String, owner: NodeOwner) {
        self.lock().insert(devpath, owner);
    }

    pub fn remove(&self, devpath: &str) {
        self.lock().remove(devpath);
    }

    /// The owner of a device at `devpath`, if it is below a registered port.
    pub fn owner_of(&self, devpath: &str) -> Option<NodeOwner> {
        self.lock().iter().find_map(|(prefix, owner)| {
            let rest = devpath.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some(*owner)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeOwner>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One kernel uevent: `ACTION@DEVPATH\0KEY=VALUE\0…`.
#[derive(Debug, PartialEq, Eq)]
pub struct Uevent<'a> {
    pub action: &'a str,
    pub devpath: &'a str,
    pub devname: Option<&'a str>,
}

/// Parses a uevent datagram: the kernel's (`ACTION@DEVPATH\0KEY=VALUE\0…`) or udev's
/// (a "libudev" header giving where its `KEY=VALUE\0` properties are); `None` for anything else.
pub fn parse_uevent(msg: &[u8]) -> Option<Uevent<'_>> {
    let properties = if msg.starts_with(b"libudev\0") {
        // prefix[8], magic (big-endian 0xfeedcafe), header_size, properties_off,
        // properties_len (native endian).
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(msg.get(at..at + 4)?.try_into().ok()?))
        };
        if msg.get(8..12)? != 0xfeedcafe_u32.to_be_bytes() {
            return None;
        }
        let off = word(16)? as usize;
        let len = word(20)? as usize;
        msg.get(off..off.checked_add(len)?)?
    } else {
        let end = msg.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&msg[..end]).ok()?.split_once('@')?;
        &msg[end + 1..]
    };
    let (mut action, mut devpath, mut devname) = (None, None, None);
    for field in properties
        .split(|b| *b == 0)
        .filter_map(|f| std::str::from_utf8(f).ok())
    {
        if let Some(v) = field.strip_prefix("ACTION=") {
            action = Some(v);
        } else if let Some(v) = field.strip_prefix("DEVPATH=") {
            devpath = Some(v);
        } else if let Some(v) = field.strip_prefix("DEVNAME=") {
            devname = Some(v);
        }
    }
    Some(Uevent {
        action: action?,
        devpath: devpath?,
        devname,
    })
}

/// Where a uevent's node is: `DEVNAME` is relative to /dev unless absolute; names leaving /dev
/// are refused.
pub fn node_path(devname: &str) -> Option<String> {
    let rel = devname.strip_prefix("/dev/").unwrap_or(devname);
    if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    Some(format!("/dev/{rel}"))
}

/// Hands one node to `owner` (not following symlinks), mode 0600.
#[cfg(target_os = "linux")]
fn chown_node(path: &str, owner: NodeOwner) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: a valid C string; plain system calls.
    unsafe {
        if libc::fchownat(
            libc::AT_FDCWD,
            c.as_ptr(),
            owner.uid,
            owner.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), 0o600, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A netlink socket on the kernel's uevents, opened while the daemon is root (binding to the
/// multicast group needs no privilege, but it is opened with the rest of USB forwarding).
#[cfg(target_os = "linux")]
pub struct Watcher {
    fd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl Watcher {
    pub fn open() -> std::io::Result<Watcher> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls on a descriptor we own.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            // 1: the kernel's events; 2: udev's, after its rules ran (none without udev).
            addr.nl_groups = 1 | 2;
            let size = 1024 * 1024;
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            );
            if libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Watcher { fd })
        }
    }

    /// Starts handing the nodes of devices below registered ports to their owners, on the
    /// node keeper's thread; called while the daemon is root. [`Keeper::settle`] must follow
    /// once the daemon has left root (or decided to stay).
    pub fn spawn(self, owners: Owners) -> std::io::Result<Keeper> {
        use std::sync::mpsc::sync_channel;
        let (started_tx, started) = sync_channel(1);
        let (settle, settle_rx) = sync_channel::<bool>(1);
        let (settled_tx, settled) = sync_channel(1);
        std::thread::Builder::new()
            .name("usb-nodes".into())
            .spawn(move || {
                // Per thread: this one keeps its permitted capabilities over the setresuid
                // that glibc applies to every thread of the process.
                // SAFETY: a plain system call on this thread's own attributes.
                let kept = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } == 0;
                let _ =
                    started_tx.send(kept.then_some(()).ok_or_else(std::io::Error::last_os_error));
                let Ok(left_root) = settle_rx.recv() else {
                    return;
                };
                let result = if left_root {
                    keep_only_node_caps()
                } else {
                    Ok(())
                };
                // SAFETY: as above.
                unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
                let failed = result.is_err();
                let _ = settled_tx.send(result);
                if !failed {
                    self.run(owners);
                }
            })?;
        started
            .recv()
            .map_err(|_| std::io::Error::other("the node keeper thread ended"))??;
        Ok(Keeper { settle, settled })
    }

    /// Reads uevents for ever (blocking: this is the keeper's own thread).
    fn run(self, owners: Owners) {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: reading into our own buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    // Interrupted, or events were lost while we were busy: the next ones come.
                    Some(libc::EINTR | libc::ENOBUFS) => continue,
                    _ => {
                        tracing::warn!(%err, "cannot read uevents: nodes of forwarded devices keep their default owners");
                        return;
                    }
                }
            }
            let Some(event) = parse_uevent(&buf[..n as usize]) else {
                continue;
            };
            if !matches!(event.action, "add" | "change" | "bind") {
                continue;
            }
            let (Some(devname), Some(owner)) = (event.devname, owners.owner_of(event.devpath))
            else {
                continue;
            };
            let Some(path) = node_path(devname) else {
                continue;
            };
            match chown_node(&path, owner) {
                Ok(()) => tracing::info!(
                    node = path,
                    uid = owner.uid,
                    "forwarded device node handed to the session's user"
                ),
                Err(err) => {
                    tracing::warn!(node = path, %err, "cannot hand a forwarded device's node to the session's user")
                }
            }
        }
    }
}

/// The node keeper's thread, waiting to hear whether the daemon left root.
#[cfg(target_os = "linux")]
pub struct Keeper {
    settle: std::sync::mpsc::SyncSender<bool>,
    settled: std::sync::mpsc::Receiver<Result<(), String>>,
}

#[cfg(target_os = "linux")]
impl Keeper {
    /// Tells the keeper whether the daemon has just left root (then it trims its capabilities
    /// to `CAP_CHOWN` and `CAP_FOWNER`) or stays root, and waits until it has: before the
    /// daemon's seccomp filter, which does not allow `capset`, is installed. An error means
    /// the keeper could not keep them and handles no nodes.
    pub fn settle(self, left_root: bool) -> Result<(), String> {
        self.settle
            .send(left_root)
            .map_err(|_| "the node keeper thread ended".to_owned())?;
        self.settled
            .recv_timeout(std::time::Duration::from_secs(5))
            .map_err(|_| "the node keeper thread did not answer".to_owned())?
    }
}

/// This thread's capabilities become exactly `CAP_CHOWN` and `CAP_FOWNER`, effective and
/// permitted, none inheritable or ambient (the daemon's uid is no longer 0 when this runs).
#[cfg(target_os = "linux")]
fn keep_only_node_caps() -> Result<(), String> {
    use caps::{CapSet, Capability, CapsHashSet};
    let keep: CapsHashSet = [Capability::CAP_CHOWN, Capability::CAP_FOWNER].into();
    let step = |what: &str, r: Result<(), caps::errors::CapsError>| {
        r.map_err(|e| format!("cannot keep CAP_CHOWN and CAP_FOWNER ({what}): {e}"))
    };
    step("permitted", caps::set(None, CapSet::Permitted, &keep))?;
    step("effective", caps::set(None, CapSet::Effective, &keep))?;
    step("inheritable", caps::clear(None, CapSet::Inheritable))?;
    step("ambient", caps::clear(None, CapSet::Ambient))?;
    let effective = caps::read(None, CapSet::Effective)
        .map_err(|e| format!("cannot read this thread's capabilities: {e}"))?;
    if effective != keep {
        return Err(format!(
            "the node keeper holds {effective:?} instead of CAP_CHOWN and CAP_FOWNER"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uevents_parse() {
        let msg = b"add@/devices/platform/vhci_hcd.0/usb3/3-1/3-1:1.0/host2/target2:0:0/2:0:0:0/block/sda\0ACTION=add\0DEVPATH=/devices/platform/vhci_hcd.0/usb3/3-1/3-1:1.0/host2/target2:0:0/2:0:0:0/block/sda\0SUBSYSTEM=block\0DEVNAME=sda\0DEVTYPE=disk\0";
        let e = parse_uevent(msg).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devname, Some("sda"));
        assert!(parse_uevent(b"libudev\0\xfe\xed").is_none());
        assert!(parse_uevent(b"no header").is_none());
    }

    #[test]
    fn udev_events_parse() {
        let props = b"ACTION=add\0DEVPATH=/devices/platform/vhci_hcd.0/usb1/1-1\0DEVNAME=/dev/bus/usb/001/002\0";
        let mut msg = b"libudev\0".to_vec();
        msg.extend_from_slice(&0xfeedcafe_u32.to_be_bytes());
        for v in [40u32, 40, props.len() as u32, 0, 0] {
            msg.extend_from_slice(&v.to_ne_bytes());
        }
        msg.resize(40, 0);
        msg.extend_from_slice(props);
        let e = parse_uevent(&msg).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devpath, "/devices/platform/vhci_hcd.0/usb1/1-1");
        assert_eq!(
            node_path(e.devname.unwrap()).as_deref(),
            Some("/dev/bus/usb/001/002")
        );
        // A header pointing past the end is refused, not read.
        msg[16] = 0xff;
        assert!(parse_uevent(&msg).is_none());
    }

    #[test]
    fn owners_match_whole_path_components() {
        let owners = Owners::default();
        let me = NodeOwner {
            uid: 1000,
            gid: 1000,
        };
        owners.insert("/devices/platform/vhci_hcd.0/usb3/3-1".into(), me);
        assert_eq!(
            owners.owner_of("/devices/platform/vhci_hcd.0/usb3/3-1"),
            Some(me)
        );
        assert_eq!(
            owners.owner_of("/devices/platform/vhci_hcd.0/usb3/3-1/3-1:1.0/host2"),
            Some(me)
        );
        assert_eq!(
            owners.owner_of("/devices/platform/vhci_hcd.0/usb3/3-10"),
            None
        );
        owners.remove("/devices/platform/vhci_hcd.0/usb3/3-1");
        assert_eq!(
            owners.owner_of("/devices/platform/vhci_hcd.0/usb3/3-1"),
            None
        );
    }

    #[test]
    fn node_names_stay_in_dev() {
        assert_eq!(
            node_path("bus/usb/003/002").as_deref(),
            Some("/dev/bus/usb/003/002")
        );
        assert_eq!(node_path("/dev/sda").as_deref(), Some("/dev/sda"));
        assert_eq!(node_path("../etc/passwd"), None);
        assert_eq!(node_path("a//b"), None);
        assert_eq!(node_path(""), None);
    }
}
