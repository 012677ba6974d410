//! One device stream: the appliance's [`UsbDeviceOpen`], the policy check, the attach to a vhci
//! port, the relay of USB/IP bytes both ways, and the detach when either side ends, the session
//! goes away or the policy changes.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
};
use tracing::Instrument;
use wayray_protocol::{
    framing,
    usb::{UsbDeviceOpen, UsbDeviceReply},
    FrameReader,
};

use super::{describe, AuditKind, AuditSink, Forwarding, Grant};

/// The largest `UsbDeviceOpen` accepted (strings and interfaces of a real device are far
/// smaller).
const MAX_OPEN_LEN: u32 = 16 * 1024;
/// Bytes read from either side at a time.
const CHUNK: usize = 64 * 1024;

/// Serves one device stream whose tag byte was read; returns when the device is detached or
/// was refused.
pub async fn serve(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    grants: watch::Receiver<Option<Grant>>,
    forwarding: Arc<Forwarding>,
    audit: AuditSink,
) {
    let open = match read_open(&mut recv).await {
        Ok(open) => open,
        Err(why) => {
            tracing::warn!(why, "bad USB device stream");
            let _ = send.reset(1u32.into());
            return;
        }
    };
    let name = describe(&open);
    let span = tracing::info_span!("usb", device = %name);
    decide_and_relay(send, recv, open, name, grants, forwarding, audit)
        .instrument(span)
        .await;
}

/// The policy check, the attach, the relay and the detach of one described device.
async fn decide_and_relay(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    open: UsbDeviceOpen,
    name: String,
    grants: watch::Receiver<Option<Grant>>,
    forwarding: Arc<Forwarding>,
    audit: AuditSink,
) {
    let grant = grants.borrow().clone();
    let decision = match (&forwarding.host, &grant) {
        (Err(why), _) => Err(format!("USB forwarding is off on this server ({why})")),
        (Ok(_), None) => Err("no user session is shown on this appliance".to_owned()),
        (Ok(host), Some(g)) => match g.filter.check(&open) {
            Ok(()) => Ok((host, g.clone())),
            Err(why) => Err(format!(
                "the USB policy for user {} does not allow this device: {why} (filter {:?})",
                g.user, g.filter.text
            )),
        },
    };
    let (host, grant) = match decision {
        Ok(d) => d,
        Err(reason) => {
            tracing::info!(reason, "USB device refused");
            audit(
                AuditKind::Refused,
                grant.as_ref(),
                format!("{name}: {reason}"),
            );
            let _ = reply(&mut send, &UsbDeviceReply::Refused { reason }).await;
            let _ = send.finish();
            return;
        }
    };
    match attach(host, &forwarding, &open, &grant) {
        Ok((port, devpath, socket)) => {
            tracing::info!(port, user = grant.user, "USB device attached");
            audit(
                AuditKind::Attached,
                Some(&grant),
                format!("{name}: vhci port {port}"),
            );
            let why = match reply(&mut send, &UsbDeviceReply::Attached { port }).await {
                Ok(()) => relay(&mut send, &mut recv, socket, grants, &open, &grant).await,
                Err(err) => format!("cannot answer the appliance: {err}"),
            };
            // Unplug first: the kernel shuts the socket down and gives every URB still in
            // flight back to its driver with an error, as for a stick pulled out of a port.
            #[cfg(target_os = "linux")]
            if let Err(err) = host.detach(port) {
                // The kernel already let go of the port (its socket closed first).
                tracing::debug!(%err, "detach");
            }
            forwarding.owners.remove(&devpath);
            host.release(port);
            let _ = send.finish();
            tracing::info!(port, why, "USB device detached");
            audit(
                AuditKind::Detached,
                Some(&grant),
                format!("{name}: vhci port {port}: {why}"),
            );
        }
        Err(reason) => {
            tracing::warn!(reason, "USB device not attached");
            audit(
                AuditKind::Refused,
                Some(&grant),
                format!("{name}: {reason}"),
            );
            let _ = reply(&mut send, &UsbDeviceReply::Refused { reason }).await;
            let _ = send.finish();
        }
    }
}

/// Reads the length-prefixed `UsbDeviceOpen`, and not one byte more (USB/IP bytes follow it
/// only after the reply, but the reader never takes more than the message anyway).
async fn read_open(recv: &mut quinn::RecvStream) -> Result<UsbDeviceOpen, String> {
    let mut reader = FrameReader::new(MAX_OPEN_LEN);
    loop {
        if let Some(open) = reader.next::<UsbDeviceOpen>().map_err(|e| e.to_string())? {
            return Ok(open);
        }
        match recv.read_chunk(reader.wanted().max(1), true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => return Err("the stream ended before the device was described".into()),
            Err(err) => return Err(err.to_string()),
        }
    }
}

async fn reply(send: &mut quinn::SendStream, msg: &UsbDeviceReply) -> Result<(), String> {
    let bytes = framing::encode(msg).map_err(|e| e.to_string())?;
    send.write_all(&bytes).await.map_err(|e| e.to_string())
}

/// Reserves a port, registers the owner of the nodes to come below it, and plugs one end of a
/// new socket pair into it; gives the port, its device path and the daemon's end.
#[cfg(target_os = "linux")]
fn attach(
    host: &super::vhci::Host,
    forwarding: &Forwarding,
    open: &UsbDeviceOpen,
    grant: &Grant,
) -> Result<(u32, String, tokio::net::UnixStream), String> {
    use std::os::fd::AsRawFd;
    let (port, devpath) = host.reserve(open.speed).map_err(|e| e.to_string())?;
    let pair = std::os::unix::net::UnixStream::pair()
        .and_then(|(ours, kernels)| ours.set_nonblocking(true).map(|()| (ours, kernels)));
    let (ours, kernels) = match pair {
        Ok(pair) => pair,
        Err(err) => {
            host.release(port);
            return Err(format!("cannot make a socket pair: {err}"));
        }
    };
    forwarding.owners.insert(devpath.clone(), grant.owner);
    if let Err(err) = host.attach(port, kernels.as_raw_fd(), open.devid, open.speed) {
        forwarding.owners.remove(&devpath);
        host.release(port);
        return Err(err.to_string());
    }
    // The kernel holds its own reference to the socket now.
    drop(kernels);
    match tokio::net::UnixStream::from_std(ours) {
        Ok(ours) => Ok((port, devpath, ours)),
        Err(err) => {
            let _ = host.detach(port);
            forwarding.owners.remove(&devpath);
            host.release(port);
            Err(format!("cannot register the socket: {err}"))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn attach(
    _host: &super::vhci::Host,
    _forwarding: &Forwarding,
    _open: &UsbDeviceOpen,
    _grant: &Grant,
) -> Result<(u32, String, tokio::net::UnixStream), String> {
    Err("USB forwarding is not supported on this OS".into())
}

/// Relays USB/IP bytes between the stream and the kernel's socket until one side ends or the
/// grant no longer covers the device; says why it stopped. Each direction waits for its writer
/// (QUIC flow control one way, the socket buffer the other), so neither side is outrun.
async fn relay(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    socket: tokio::net::UnixStream,
    mut grants: watch::Receiver<Option<Grant>>,
    open: &UsbDeviceOpen,
    grant: &Grant,
) -> String {
    let (mut from_kernel, mut to_kernel) = socket.into_split();
    let down = async {
        loop {
            match recv.read_chunk(CHUNK, true).await {
                Ok(Some(chunk)) => {
                    if let Err(err) = to_kernel.write_all(&chunk.bytes).await {
                        return format!("the kernel closed the port ({err})");
                    }
                }
                Ok(None) => {
                    return "the appliance ended the stream (device unplugged or released)"
                        .to_owned()
                }
                Err(err) => return format!("appliance gone ({err})"),
            }
        }
    };
    let up = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match from_kernel.read_buf(&mut buf).await {
                Ok(0) => return "the kernel closed the port".to_owned(),
                Ok(_) => {
                    if let Err(err) = send.write_chunk(buf.split().freeze()).await {
                        return format!("appliance gone ({err})");
                    }
                }
                Err(err) => return format!("the kernel's socket failed ({err})"),
            }
        }
    };
    let policy = async {
        loop {
            if grants.changed().await.is_err() {
                return "appliance gone".to_owned();
            }
            let now = grants.borrow_and_update().clone();
            match now {
                None => {
                    return "the session left the appliance (card out, logout, or detached)"
                        .to_owned()
                }
                Some(g) if g.session != grant.session || g.owner != grant.owner => {
                    return "another session is shown on the appliance".to_owned()
                }
                Some(g) if !g.filter.allows(open) => {
                    return format!("the USB policy changed (filter {:?})", g.filter.text)
                }
                Some(_) => {}
            }
        }
    };
    tokio::select! {
        why = down => why,
        why = up => why,
        why = policy => why,
    }
}
