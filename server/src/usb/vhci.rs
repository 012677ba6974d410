//! The kernel's USB/IP virtual host controller (`vhci-hcd`): its port table, and plugging a
//! connected stream socket into a port (`attach`) or pulling it out (`detach`).
//!
//! The sysfs files are opened once, while the daemon is still root, and written through those
//! descriptors afterwards: a sysfs attribute takes each `write` as one command whatever the
//! offset, so no reopen (and no root) is needed per device.

use std::{collections::HashSet, path::PathBuf, sync::Mutex};

/// Where `vhci-hcd` puts its first controller.
pub const VHCI_DIR: &str = "/sys/devices/platform/vhci_hcd.0";

/// `enum usbip_device_status`'s `VDEV_ST_NULL`: nothing plugged into the port.
const VDEV_ST_NULL: u32 = 4;
/// Linux `enum usb_device_speed`: `USB_SPEED_SUPER` and `USB_SPEED_SUPER_PLUS` go to the
/// controller's USB 3 root hub, everything slower to its USB 2 one.
const USB_SPEED_SUPER: u32 = 5;
const USB_SPEED_SUPER_PLUS: u32 = 6;

/// The two root hubs of a `vhci-hcd` controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hub {
    /// USB 2 (low, full, high speed, wireless).
    High,
    /// USB 3.
    Super,
}

impl Hub {
    /// The hub a device of `speed` (Linux `enum usb_device_speed`) is plugged into.
    pub fn for_speed(speed: u32) -> Hub {
        if speed == USB_SPEED_SUPER || speed == USB_SPEED_SUPER_PLUS {
            Hub::Super
        } else {
            Hub::High
        }
    }
}

/// One line of the controller's `status` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    pub hub: Hub,
    /// The number `attach` and `detach` take (counted over both hubs).
    pub port: u32,
    /// `enum usbip_device_status`; [`PortStatus::is_free`] tells the one that matters.
    pub status: u32,
}

impl PortStatus {
    pub fn is_free(&self) -> bool {
        self.status == VDEV_ST_NULL
    }
}

/// Parses `status` (Linux 4.13+: `hub port sta spd dev sockfd local_busid`, one port a line,
/// `hs`/`ss` first); lines it does not understand are skipped.
pub fn parse_status(text: &str) -> Vec<PortStatus> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let hub = match fields.next()? {
                "hs" => Hub::High,
                "ss" => Hub::Super,
                _ => return None,
            };
            let port = fields.next()?.parse().ok()?;
            let status = fields.next()?.parse().ok()?;
            Some(PortStatus { hub, port, status })
        })
        .collect()
}

/// The first free port of `hub` not in `reserved`.
pub fn free_port(ports: &[PortStatus], hub: Hub, reserved: &HashSet<u32>) -> Option<u32> {
    ports
        .iter()
        .find(|p| p.hub == hub && p.is_free() && !reserved.contains(&p.port))
        .map(|p| p.port)
}

/// The device path (as in a uevent's `DEVPATH`) of whatever is plugged into `port`:
/// `/devices/platform/vhci_hcd.0/usbB/B-P`, `B` the bus of the port's root hub and `P` the
/// port on that hub counted from 1.
pub fn port_devpath(ports: &[PortStatus], port: u32, bus: u32) -> Option<String> {
    let me = ports.iter().find(|p| p.port == port)?;
    let first = ports
        .iter()
        .filter(|p| p.hub == me.hub)
        .map(|p| p.port)
        .min()?;
    Some(format!(
        "/devices/platform/vhci_hcd.0/usb{bus}/{bus}-{}",
        port - first + 1
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum VhciError {
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free {hub:?}-speed port on vhci-hcd")]
    NoFreePort { hub: Hub },
    #[error("vhci-hcd refused to {what} port {port}: {source}")]
    Write {
        what: &'static str,
        port: u32,
        #[source]
        source: std::io::Error,
    },
}

/// An open `vhci-hcd` controller.
pub struct Host {
    #[cfg(target_os = "linux")]
    attach: std::fs::File,
    #[cfg(target_os = "linux")]
    detach: std::fs::File,
    dir: PathBuf,
    /// Ports handed out and not yet detached, so two devices never race for one port.
    reserved: Mutex<HashSet<u32>>,
    /// The bus numbers of the USB 2 and USB 3 root hubs.
    buses: (u32, u32),
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("dir", &self.dir)
            .field("buses", &self.buses)
            .finish()
    }
}

impl Host {
    /// Opens `vhci_hcd.0`, loading the module once (`modprobe vhci-hcd`) when it is missing.
    /// Needs root for the `attach` and `detach` files.
    #[cfg(target_os = "linux")]
    pub fn open() -> Result<Host, VhciError> {
        use std::fs::OpenOptions;
        let dir = PathBuf::from(VHCI_DIR);
        if !dir.exists() {
            let loaded = std::process::Command::new("modprobe")
                .arg("vhci-hcd")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if !dir.exists() {
                let why = match loaded {
                    Ok(status) => format!("modprobe vhci-hcd: {status}"),
                    Err(err) => format!("cannot run modprobe: {err}"),
                };
                return Err(VhciError::Unavailable(format!(
                    "this kernel has no vhci-hcd (USB/IP virtual host controller; {why})"
                )));
            }
        }
        let open = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| VhciError::Read { path, source })
        };
        let attach = open("attach")?;
        let detach = open("detach")?;
        let buses = root_hub_buses(&dir)?;
        Ok(Host {
            attach,
            detach,
            dir,
            reserved: Mutex::new(HashSet::new()),
            buses,
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn open() -> Result<Host, VhciError> {
        Err(VhciError::Unavailable(
            "USB forwarding is not supported on this OS (it needs Linux's vhci-hcd)".into(),
        ))
    }

    /// The controller's ports as the kernel sees them now.
    pub fn ports(&self) -> Result<Vec<PortStatus>, VhciError> {
        let path = self.dir.join("status");
        let text =
            std::fs::read_to_string(&path).map_err(|source| VhciError::Read { path, source })?;
        Ok(parse_status(&text))
    }

    /// Reserves a free port for a device of `speed` and gives its device path; release it with
    /// [`Host::release`] once detached.
    pub fn reserve(&self, speed: u32) -> Result<(u32, String), VhciError> {
        let hub = Hub::for_speed(speed);
        let ports = self.ports()?;
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let port = free_port(&ports, hub, &reserved).ok_or(VhciError::NoFreePort { hub })?;
        let bus = match hub {
            Hub::High => self.buses.0,
            Hub::Super => self.buses.1,
        };
        let devpath = port_devpath(&ports, port, bus).ok_or(VhciError::NoFreePort { hub })?;
        reserved.insert(port);
        Ok((port, devpath))
    }

    pub fn release(&self, port: u32) {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        reserved.remove(&port);
    }

    /// Plugs the connected stream socket `fd` (a descriptor of this process; the kernel takes
    /// its own reference) into `port` as device `devid` at `speed`.
    #[cfg(target_os = "linux")]
    pub fn attach(
        &self,
        port: u32,
        fd: std::os::fd::RawFd,
        devid: u32,
        speed: u32,
    ) -> Result<(), VhciError> {
        use std::os::unix::fs::FileExt;
        let line = format!("{port} {fd} {devid} {speed}");
        self.attach
            .write_at(line.as_bytes(), 0)
            .map(|_| ())
            .map_err(|source| VhciError::Write {
                what: "attach",
                port,
                source,
            })
    }

    /// Unplugs `port`: the kernel shuts the socket down, gives every URB still in flight back
    /// to its driver with an error, and reports the disconnect to the USB core.
    #[cfg(target_os = "linux")]
    pub fn detach(&self, port: u32) -> Result<(), VhciError> {
        use std::os::unix::fs::FileExt;
        self.detach
            .write_at(port.to_string().as_bytes(), 0)
            .map(|_| ())
            .map_err(|source| VhciError::Write {
                what: "detach",
                port,
                source,
            })
    }
}

/// The bus numbers of the controller's USB 2 and USB 3 root hubs (`usbN` children, told apart
/// by their `speed`: 480 or less, and 5000 or more).
#[cfg(target_os = "linux")]
fn root_hub_buses(dir: &std::path::Path) -> Result<(u32, u32), VhciError> {
    let entries = std::fs::read_dir(dir).map_err(|source| VhciError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let (mut high, mut sup) = (None, None);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(bus) = name.strip_prefix("usb").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let speed = std::fs::read_to_string(entry.path().join("speed")).unwrap_or_default();
        match speed.trim().parse::<u32>() {
            Ok(s) if s >= 5000 => sup = Some(bus),
            Ok(_) => high = Some(bus),
            Err(_) => {}
        }
    }
    match (high, sup) {
        (Some(h), Some(s)) => Ok((h, s)),
        _ => Err(VhciError::Unavailable(format!(
            "{} has no USB 2 and USB 3 root hubs",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "hub port sta spd dev      sockfd local_busid
hs  0000 006 002 00010002 000003 3-1
hs  0001 004 000 00000000 000000 0-0
ss  0002 004 000 00000000 000000 0-0
ss  0003 004 000 00000000 000000 0-0
";

    #[test]
    fn status_lines_give_hub_port_and_state() {
        let ports = parse_status(STATUS);
        assert_eq!(ports.len(), 4);
        assert_eq!(
            ports[0],
            PortStatus {
                hub: Hub::High,
                port: 0,
                status: 6
            }
        );
        assert!(!ports[0].is_free());
        assert!(ports[1].is_free());
        assert_eq!(ports[3].hub, Hub::Super);
    }

    #[test]
    fn a_free_port_of_the_right_speed_is_picked() {
        let ports = parse_status(STATUS);
        let none = HashSet::new();
        assert_eq!(free_port(&ports, Hub::for_speed(3), &none), Some(1));
        assert_eq!(free_port(&ports, Hub::for_speed(5), &none), Some(2));
        let taken: HashSet<u32> = [1, 2].into();
        assert_eq!(free_port(&ports, Hub::High, &taken), None);
        assert_eq!(free_port(&ports, Hub::Super, &taken), Some(3));
    }

    #[test]
    fn device_paths_count_ports_per_hub_from_one() {
        let ports = parse_status(STATUS);
        assert_eq!(
            port_devpath(&ports, 1, 3).as_deref(),
            Some("/devices/platform/vhci_hcd.0/usb3/3-2")
        );
        assert_eq!(
            port_devpath(&ports, 2, 4).as_deref(),
            Some("/devices/platform/vhci_hcd.0/usb4/4-1")
        );
        assert_eq!(port_devpath(&ports, 9, 4), None);
    }
}
