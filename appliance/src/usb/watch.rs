//! Which USB devices are plugged in: a scan of `/sys/bus/usb/devices` at start and again after
//! every burst of USB or input uevents from the kernel (the appliance runs no udevd; the socket
//! is the display hotplug's, [`crate::display::hotplug::netlink`]).
//!
//! Everything the filter needs comes from sysfs attributes, so a device is described without
//! opening it: a device the filter denies is never touched.

use std::collections::BTreeMap;
use std::future::pending;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use wayray_protocol::usb::{UsbDeviceOpen, UsbInterfaceClass};

use crate::display::hotplug::{netlink, register, Received, Uevent};

/// Where the kernel lists USB devices and interfaces.
pub const SYSFS_USB_DEVICES: &str = "/sys/bus/usb/devices";

/// Uevents come in bursts (device, interfaces, drivers binding, input nodes); the scan waits
/// for this much quiet so it sees the device whole.
const SETTLE: Duration = Duration::from_millis(300);

/// One plugged-in device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// What the server is told ([`UsbDeviceOpen`]); `busid` is the sysfs name ("1-2").
    pub info: UsbDeviceOpen,
    pub busnum: u32,
    pub devnum: u32,
    /// Some interface has an input device (evdev) under it: the appliance's own input
    /// (libinput reads every evdev device of the seat) may be reading it.
    pub has_input: bool,
}

impl Present {
    /// Same device (not unplugged and replugged since): the kernel gives a replugged device a
    /// new device number.
    pub fn same_device(&self, other: &Present) -> bool {
        self.info.busid == other.info.busid && self.devnum == other.devnum
    }
}

/// Every USB device under `root` (normally [`SYSFS_USB_DEVICES`]) by bus id; root hubs and
/// interfaces are left out, and so is a device whose attributes cannot be read (it is going
/// away, or sysfs is not what the kernel writes).
pub fn scan(root: &Path) -> BTreeMap<String, Present> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // "1-2", "1-2.4": devices; "usb1": root hubs; "1-2:1.0": interfaces.
        if name.starts_with("usb") || name.contains(':') {
            continue;
        }
        if let Some(present) = read_device(&root.join(&name), &name) {
            found.insert(name, present);
        }
    }
    found
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    Some(text.trim().to_owned())
}

fn hex<T: TryFrom<u32>>(dir: &Path, name: &str) -> Option<T> {
    T::try_from(u32::from_str_radix(&attr(dir, name)?, 16).ok()?).ok()
}

fn decimal(dir: &Path, name: &str) -> Option<u32> {
    attr(dir, name)?.parse().ok()
}

/// sysfs `speed` (Mbit/s) → Linux `enum usb_device_speed`, as `vhci-hcd` wants it.
fn speed(mbps: &str) -> u32 {
    match mbps {
        "1.5" => 1,
        "12" => 2,
        "480" => 3,
        "53.3-480" => 4,
        "5000" => 5,
        "10000" | "20000" => 6,
        _ => 0,
    }
}

fn read_device(dir: &Path, busid: &str) -> Option<Present> {
    let busnum = decimal(dir, "busnum")?;
    let devnum = decimal(dir, "devnum")?;
    let mut interfaces = Vec::new();
    let mut has_input = false;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{busid}:"))
        })
        .map(|e| e.path())
        .collect();
    entries.sort();
    for interface in entries {
        interfaces.push(UsbInterfaceClass {
            class: hex(&interface, "bInterfaceClass")?,
            subclass: hex(&interface, "bInterfaceSubClass")?,
            protocol: hex(&interface, "bInterfaceProtocol")?,
        });
        has_input |= has_input_below(&interface, 3);
    }
    Some(Present {
        info: UsbDeviceOpen {
            busid: busid.to_owned(),
            devid: busnum << 16 | devnum,
            speed: speed(&attr(dir, "speed").unwrap_or_default()),
            vendor: hex(dir, "idVendor")?,
            product: hex(dir, "idProduct")?,
            version: hex(dir, "bcdDevice")?,
            class: hex(dir, "bDeviceClass")?,
            subclass: hex(dir, "bDeviceSubClass")?,
            protocol: hex(dir, "bDeviceProtocol")?,
            interfaces,
            manufacturer: attr(dir, "manufacturer"),
            product_name: attr(dir, "product"),
            serial: attr(dir, "serial"),
        },
        busnum,
        devnum,
        has_input,
    })
}

/// An `input` directory within `depth` levels (`1-1:1.0/0003:0627:0001.0001/input/input3`).
fn has_input_below(dir: &Path, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        is_dir && (e.file_name() == "input" || (depth > 0 && has_input_below(&e.path(), depth - 1)))
    })
}

/// Wakes the forwarder when USB devices may have come or gone.
pub struct Watch {
    socket: Option<AsyncFd<OwnedFd>>,
}

impl Watch {
    /// Listens to the kernel's uevents; without the socket (a sandbox without netlink) only the
    /// scan at each connection sees devices.
    pub fn open() -> Self {
        match netlink::open().and_then(register) {
            Ok(socket) => Self {
                socket: Some(socket),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for kernel uevents; USB devices plugged in later are not forwarded");
                Self { socket: None }
            }
        }
    }

    /// Waits for a USB or input uevent, then for the burst around it to settle.
    pub async fn changed(&mut self) {
        loop {
            let Some(socket) = &self.socket else {
                return pending().await;
            };
            match wait_for_usb(socket).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read kernel uevents; USB hotplug is off");
                    self.socket = None;
                }
            }
        }
        // Settle: keep draining until SETTLE passes without a relevant event.
        while let Some(socket) = &self.socket {
            match tokio::time::timeout(SETTLE, wait_for_usb(socket)).await {
                Err(_) | Ok(Err(_)) => break,
                Ok(Ok(())) => {}
            }
        }
    }
}

async fn wait_for_usb(socket: &AsyncFd<OwnedFd>) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 8192];
    loop {
        let mut ready = socket.readable().await?;
        let mut relevant = false;
        loop {
            match netlink::receive(ready.get_inner(), &mut buffer) {
                Ok(Received::Datagram(len)) => {
                    if let Some(event) = Uevent::parse(&buffer[..len]) {
                        relevant |= is_usb_change(&event);
                    }
                }
                Ok(Received::Foreign) => {}
                Ok(Received::Overflow) => relevant = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if relevant {
            return Ok(());
        }
    }
}

/// A USB device or interface came, went or changed drivers, or an input device appeared.
pub fn is_usb_change(event: &Uevent) -> bool {
    matches!(event.get("SUBSYSTEM"), Some("usb") | Some("input"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, value: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }

    /// A sysfs tree as the kernel writes it for QEMU's usb-storage and usb-kbd.
    fn fake_sysfs(root: &Path) {
        let stick = root.join("1-1");
        for (k, v) in [
            ("busnum", "1"),
            ("devnum", "2"),
            ("speed", "480"),
            ("idVendor", "46f4"),
            ("idProduct", "0001"),
            ("bcdDevice", "0000"),
            ("bDeviceClass", "00"),
            ("bDeviceSubClass", "00"),
            ("bDeviceProtocol", "00"),
            ("manufacturer", "QEMU"),
            ("product", "QEMU USB HARDDRIVE"),
        ] {
            write(&stick, k, v);
        }
        let intf = stick.join("1-1:1.0");
        for (k, v) in [
            ("bInterfaceClass", "08"),
            ("bInterfaceSubClass", "06"),
            ("bInterfaceProtocol", "50"),
        ] {
            write(&intf, k, v);
        }
        let kbd = root.join("1-2");
        for (k, v) in [
            ("busnum", "1"),
            ("devnum", "3"),
            ("speed", "12"),
            ("idVendor", "0627"),
            ("idProduct", "0001"),
            ("bcdDevice", "0000"),
            ("bDeviceClass", "00"),
            ("bDeviceSubClass", "00"),
            ("bDeviceProtocol", "00"),
        ] {
            write(&kbd, k, v);
        }
        let intf = kbd.join("1-2:1.0");
        for (k, v) in [
            ("bInterfaceClass", "03"),
            ("bInterfaceSubClass", "01"),
            ("bInterfaceProtocol", "01"),
        ] {
            write(&intf, k, v);
        }
        std::fs::create_dir_all(intf.join("0003:0627:0001.0001/input/input3/event2")).unwrap();
        // Root hub and the interface links beside the devices: skipped.
        write(&root.join("usb1"), "busnum", "1");
        write(&root.join("1-1:1.0"), "bInterfaceClass", "08");
        // Half gone: no attributes.
        std::fs::create_dir_all(root.join("1-3")).unwrap();
    }

    #[test]
    fn scan_reads_devices_and_their_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        fake_sysfs(dir.path());
        let found = scan(dir.path());
        assert_eq!(found.keys().collect::<Vec<_>>(), ["1-1", "1-2"]);
        let stick = &found["1-1"];
        assert_eq!(stick.info.devid, 1 << 16 | 2);
        assert_eq!(stick.info.speed, 3);
        assert_eq!((stick.info.vendor, stick.info.product), (0x46f4, 1));
        assert_eq!(
            stick.info.interfaces,
            [UsbInterfaceClass {
                class: 8,
                subclass: 6,
                protocol: 0x50
            }]
        );
        assert_eq!(
            stick.info.product_name.as_deref(),
            Some("QEMU USB HARDDRIVE")
        );
        assert_eq!(stick.info.serial, None);
        assert!(!stick.has_input);
        let kbd = &found["1-2"];
        assert!(kbd.has_input);
        assert_eq!(kbd.info.speed, 2);
        assert!(!kbd.same_device(stick));
        assert!(kbd.same_device(&kbd.clone()));
    }

    #[test]
    fn usb_and_input_uevents_count() {
        let datagram =
            |s: &[&str]| -> Vec<u8> { s.iter().flat_map(|s| s.bytes().chain([0])).collect() };
        let usb = datagram(&[
            "add@/devices/pci0000:00/usb1/1-1",
            "ACTION=add",
            "SUBSYSTEM=usb",
            "DEVTYPE=usb_device",
        ]);
        assert!(is_usb_change(&Uevent::parse(&usb).unwrap()));
        let drm = datagram(&["change@/devices/drm/card0", "SUBSYSTEM=drm", "HOTPLUG=1"]);
        assert!(!is_usb_change(&Uevent::parse(&drm).unwrap()));
    }
}
