//! USB forwarding (protocol v9): what opens a device stream ([`StreamKind::Usb`]) before the
//! USB/IP commands flow on it unchanged.
//!
//! The URBs themselves use Linux's USB/IP wire format (`Documentation/usb/usbip_protocol.rst`):
//! the server side hands them to the kernel's `vhci-hcd` as they are, so no translation sits
//! between the appliance's device and the session's kernel.
//!
//! [`StreamKind::Usb`]: crate::StreamKind::Usb

use serde::{Deserialize, Serialize};

/// Appliance → server, first message on a device stream: what the device is, so the server can
/// check its policy, attach it at the right speed and name it in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsbDeviceOpen {
    /// The appliance's bus id ("1-2"), unique on that appliance while the device is plugged in.
    pub busid: String,
    /// USB/IP's device id, `busnum << 16 | devnum`; `RET_SUBMIT`s carry it.
    pub devid: u32,
    /// Linux `enum usb_device_speed` (1 low, 2 full, 3 high, 5 super …), as `vhci-hcd` wants it.
    pub speed: u32,
    pub vendor: u16,
    pub product: u16,
    /// `bcdDevice`, the "version" of a filter rule.
    pub version: u16,
    /// Device class, subclass and protocol from the device descriptor.
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    /// Class, subclass and protocol of every interface of the active configuration.
    pub interfaces: Vec<UsbInterfaceClass>,
    /// Strings from the descriptors when the device has them, for people reading logs.
    pub manufacturer: Option<String>,
    pub product_name: Option<String>,
    pub serial: Option<String>,
}

/// One interface's class triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsbInterfaceClass {
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
}

/// Server → appliance, the answer on a device stream. After `Attached`, USB/IP bytes follow;
/// after `Refused` the server finishes the stream and the appliance gives the device back to its
/// own kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsbDeviceReply {
    /// The device is plugged into the session's virtual host controller at this port.
    Attached { port: u32 },
    /// Not forwarded; the text says why (policy, no session, no `vhci-hcd`, no free port).
    Refused { reason: String },
}

pub mod filter;
pub mod usbip;

pub use filter::{FilterError, UsbFilter, UsbFilterRule, Verdict};
