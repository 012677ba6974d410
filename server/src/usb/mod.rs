//! USB forwarding, server side (protocol v9, issue 21): a device an appliance forwards on a
//! [`StreamKind::Usb`](wayray_protocol::StreamKind::Usb) stream is plugged into the kernel's
//! USB/IP virtual host controller (`vhci-hcd`) through one end of a Unix socket pair, and the
//! daemon relays the other end to the stream. The session's user gets the device's nodes.
//!
//! - [`policy`]: which devices may come, per user and per appliance network (`[usb]`);
//! - [`vhci`]: the controller's ports, `attach` and `detach`;
//! - [`nodes`]: uevents below a vhci port hand `/dev` nodes to the session's user;
//! - [`device`]: one device stream from the appliance's open to the detach.

pub mod device;
pub mod nodes;
pub mod policy;
pub mod vhci;

use std::sync::Arc;

#[cfg(target_os = "linux")]
pub use nodes::Keeper;
/// Elsewhere there is no node keeper (nor vhci-hcd).
#[cfg(not(target_os = "linux"))]
pub enum Keeper {}

pub use policy::{Filter, UsbConfig};

/// Whom a session's forwarded devices belong to, and what may come: what the daemon decides
/// for one appliance (`None` while it shows no user session, or forwarding is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub filter: Filter,
    /// The session's user, for logs and the audit log.
    pub user: String,
    pub owner: nodes::NodeOwner,
    /// The session the devices are attached for.
    pub session: u64,
}

/// What the audit log records of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Attached,
    Refused,
    Detached,
}

/// Writes an audit entry for a device of this connection: the kind, the grant it was under
/// (if any) and the detail (device, port, reason).
pub type AuditSink = Arc<dyn Fn(AuditKind, Option<&Grant>, String) + Send + Sync>;

/// USB forwarding on this server: the controller when there is one, and the owners of the
/// nodes below its ports.
#[derive(Debug)]
pub struct Forwarding {
    host: Result<vhci::Host, String>,
    owners: nodes::Owners,
}

impl Forwarding {
    /// Opens `vhci-hcd` (loading it once) and starts handing device nodes to their users,
    /// while the daemon is still root (`root`: whether it is, and why not). Says once in the log
    /// when forwarding is off, and why. The node keeper that comes with it must be settled once
    /// the daemon has left root ([`nodes::Keeper::settle`]).
    pub fn start(config: &UsbConfig, root: Result<(), &str>) -> (Forwarding, Option<Keeper>) {
        let owners = nodes::Owners::default();
        let host = if !config.enabled {
            Err("[usb] enabled = false".to_owned())
        } else if let Err(why) = root {
            Err(why.to_owned())
        } else {
            vhci::Host::open().map_err(|e| e.to_string())
        };
        #[cfg(target_os = "linux")]
        let (host, keeper) = match host {
            Ok(host) => {
                match nodes::Watcher::open().and_then(|watcher| watcher.spawn(owners.clone())) {
                    Ok(keeper) => (Ok(host), Some(keeper)),
                    Err(e) => (
                        Err(format!("cannot watch kernel uevents for device nodes: {e}")),
                        None,
                    ),
                }
            }
            Err(why) => (Err(why), None),
        };
        #[cfg(not(target_os = "linux"))]
        let keeper = None;
        match &host {
            Ok(host) => tracing::info!(?host, "USB forwarding through vhci-hcd"),
            Err(why) => tracing::warn!(
                why,
                "USB forwarding is off: appliances keep their USB devices"
            ),
        }
        (Forwarding { host, owners }, keeper)
    }

    /// Forwarding that is off (tests, or before start-up).
    pub fn off(why: &str) -> Forwarding {
        Forwarding {
            host: Err(why.to_owned()),
            owners: nodes::Owners::default(),
        }
    }

    /// Whether devices can be attached at all.
    pub fn available(&self) -> bool {
        self.host.is_ok()
    }
}

/// A device as people read it in logs: bus id, ids, names, classes.
pub fn describe(d: &wayray_protocol::usb::UsbDeviceOpen) -> String {
    let mut text = format!("{} {:04x}:{:04x}", d.busid, d.vendor, d.product);
    for name in [&d.manufacturer, &d.product_name].into_iter().flatten() {
        text.push_str(&format!(" {name:?}"));
    }
    text.push_str(&format!(" class {:02x}", d.class));
    let interfaces: Vec<String> = d
        .interfaces
        .iter()
        .map(|i| format!("{:02x}/{:02x}/{:02x}", i.class, i.subclass, i.protocol))
        .collect();
    if !interfaces.is_empty() {
        text.push_str(&format!(" interfaces {}", interfaces.join(",")));
    }
    text
}
