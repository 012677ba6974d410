//! USB forwarding, the appliance's side (issue 21): devices plugged into the appliance that the
//! server's filter allows leave for the session, one bidirectional QUIC stream per device.
//!
//! How it behaves (what the server side can rely on):
//! - Per connection, after `Welcome`. Until a `ServerControl::UsbPolicy` arrives nothing is
//!   forwarded; `UsbPolicy { filter: None }` (or a filter this appliance cannot parse) takes
//!   nothing. On every policy, every plugged-in device is decided again ([`filter::decide`]):
//!   the filter (usbredir rules, `wayray_protocol::usb::filter`) first, then what the appliance
//!   keeps whatever the server says: hubs, devices with a boot-protocol HID interface (its
//!   keyboard and mouse), devices with an evdev node (its input may read them) and smart-card
//!   readers (its token reader; the session gets the card through PC/SC).
//! - Devices come from a scan of `/sys/bus/usb/devices` and again after each burst of USB or
//!   input uevents ([`watch`]); descriptors are read from sysfs, so a denied device is never
//!   opened.
//! - An allowed device: the appliance opens a bidirectional stream, writes the tag byte
//!   `StreamKind::Usb`, a length-prefixed `UsbDeviceOpen`, and reads the length-prefixed
//!   `UsbDeviceReply`. `Refused`: the stream is finished and the device stays local (asked
//!   again only after a new policy or a replug). `Attached`: the appliance detaches the
//!   device's kernel drivers, claims every interface of the active configuration and serves
//!   USB/IP commands from the stream ([`forward`]): `RET_SUBMIT` per `CMD_SUBMIT` (same
//!   seqnum, devid/direction/ep 0), up to 32 URBs in flight per endpoint; `CMD_UNLINK` as
//!   usbip-host answers it (`RET_UNLINK` -ECONNRESET when cancelled, 0 when it had finished,
//!   after its `RET_SUBMIT`).
//! - Unplugged, or no longer allowed by a new policy: URBs in flight are cancelled and
//!   answered, the stream is finished, the interfaces are released and the kernel drivers
//!   reattached. The server finishing the stream does the same on the appliance.
//! - The connection ending drops everything the same way (the streams go with it).
//!
//! Limits: isochronous URBs are answered `-EOPNOTSUPP` (every iso packet too), so audio
//! devices and webcams attach but do not stream; SET_CONFIGURATION to another configuration
//! than the active one is refused (-EPIPE); usbfs cancels a whole endpoint queue, so an
//! unlinked URB takes the URBs queued behind it on the same endpoint with it (answered
//! -ECONNRESET); `URB_ZERO_PACKET` is not passed on.

pub mod filter;
pub mod forward;
pub mod transfer;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use tokio::sync::{oneshot, watch as channel};
use tokio::task::{JoinHandle, JoinSet};
use wayray_protocol::usb::UsbFilter;

use filter::Decision;
use forward::Ended;
use watch::Present;

/// What the appliance's config says about USB (flag `--no-usb`, config `no-usb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbConfig {
    pub enabled: bool,
    /// Where devices are listed; [`watch::SYSFS_USB_DEVICES`] but in tests.
    pub sysfs: PathBuf,
}

impl Default for UsbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sysfs: PathBuf::from(watch::SYSFS_USB_DEVICES),
        }
    }
}

/// USB forwarding for one connection; dropping it stops every forward (devices go back to
/// their kernel drivers).
pub struct UsbSession {
    policy: Option<channel::Sender<Option<String>>>,
    task: Option<JoinHandle<()>>,
}

impl UsbSession {
    /// Starts watching devices for `connection` (nothing when USB is off).
    pub fn start(config: &UsbConfig, connection: &quinn::Connection) -> Self {
        if !config.enabled {
            return Self {
                policy: None,
                task: None,
            };
        }
        let (policy, policy_rx) = channel::channel(None);
        let task = tokio::spawn(manage(connection.clone(), policy_rx, config.sysfs.clone()));
        Self {
            policy: Some(policy),
            task: Some(task),
        }
    }

    /// The server's `UsbPolicy`.
    pub fn policy(&self, filter: Option<String>) {
        match &self.policy {
            Some(policy) => {
                let _ = policy.send(Some(filter.unwrap_or_default()));
            }
            None => tracing::debug!(
                ?filter,
                "USB policy received; USB forwarding is off (--no-usb)"
            ),
        }
    }
}

impl Drop for UsbSession {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Running {
    device: Present,
    stop: Option<oneshot::Sender<String>>,
}

/// The policy channel carries `None` before the first policy and `Some("")` for a policy of
/// `None` (an empty filter denies everything, the same).
async fn manage(
    connection: quinn::Connection,
    mut policy_rx: channel::Receiver<Option<String>>,
    sysfs: PathBuf,
) {
    let mut watch = watch::Watch::open();
    let mut present: BTreeMap<String, Present> = watch::scan(&sysfs);
    let mut policy: Option<UsbFilter> = None;
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut tasks: JoinSet<(String, Result<Ended, forward::ForwardError>)> = JoinSet::new();
    // Devices not to offer again under this policy (refused, or failed), by (busid, devnum).
    let mut settled: HashSet<(String, u32)> = HashSet::new();
    // What was last logged per device, so a rescan does not repeat it.
    let mut logged: BTreeMap<String, Decision> = BTreeMap::new();
    loop {
        // Reconcile what runs with what is plugged in and allowed.
        for (busid, run) in running.iter_mut() {
            let why = match present.get(busid) {
                Some(now) if now.same_device(&run.device) => {
                    match filter::decide(policy.as_ref(), now) {
                        Decision::Forward => continue,
                        Decision::Keep(why) => why,
                    }
                }
                _ => "unplugged".to_owned(),
            };
            if let Some(stop) = run.stop.take() {
                tracing::info!(%busid, %why, "USB device no longer forwarded");
                let _ = stop.send(why);
            }
        }
        for (busid, device) in &present {
            let decision = filter::decide(policy.as_ref(), device);
            if logged.get(busid) != Some(&decision) {
                match &decision {
                    Decision::Forward => {
                        tracing::info!(%busid, vendor = format_args!("{:04x}", device.info.vendor), product = format_args!("{:04x}", device.info.product), "USB device allowed by the server's filter")
                    }
                    Decision::Keep(why) => {
                        tracing::info!(%busid, vendor = format_args!("{:04x}", device.info.vendor), product = format_args!("{:04x}", device.info.product), %why, "USB device stays local")
                    }
                }
                logged.insert(busid.clone(), decision.clone());
            }
            if decision != Decision::Forward
                || running.contains_key(busid)
                || settled.contains(&(busid.clone(), device.devnum))
            {
                continue;
            }
            let (stop, stop_rx) = oneshot::channel();
            running.insert(
                busid.clone(),
                Running {
                    device: device.clone(),
                    stop: Some(stop),
                },
            );
            let (connection, device, busid) = (connection.clone(), device.clone(), busid.clone());
            tasks.spawn(async move {
                let ended = forward::forward(connection, device, stop_rx).await;
                (busid, ended)
            });
        }
        logged.retain(|busid, _| present.contains_key(busid));

        tokio::select! {
            changed = policy_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let text = policy_rx.borrow_and_update().clone();
                policy = filter::parse_policy(text.as_deref().filter(|t| !t.is_empty()));
                tracing::info!(filter = %policy.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "none".into()), "USB policy");
                settled.clear();
            }
            () = watch.changed() => {
                present = watch::scan(&sysfs);
                settled.retain(|(busid, devnum)| present.get(busid).is_some_and(|p| p.devnum == *devnum));
            }
            Some(joined) = tasks.join_next() => {
                let Ok((busid, ended)) = joined else { continue };
                if let Some(run) = running.remove(&busid) {
                    let key = (busid.clone(), run.device.devnum);
                    match ended {
                        Ok(Ended::Refused(reason)) => {
                            tracing::info!(%busid, %reason, "the server refused the USB device; it stays local");
                            settled.insert(key);
                        }
                        Ok(Ended::Stopped(why)) => tracing::info!(%busid, %why, "USB device given back to the appliance"),
                        Ok(Ended::ServerFinished) => {
                            tracing::info!(%busid, "the server ended the USB device's stream; it stays local");
                            settled.insert(key);
                        }
                        Err(e) => {
                            let cause = std::error::Error::source(&e).map(|s| s.to_string());
                            tracing::warn!(%busid, error = %e, ?cause, "USB forwarding failed; the device stays local");
                            settled.insert(key);
                        }
                    }
                }
            }
        }
    }
}
