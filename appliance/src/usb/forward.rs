//! One forwarded device: its QUIC stream (tag byte, `UsbDeviceOpen`, the server's
//! `UsbDeviceReply`), then USB/IP commands served on the real device until unplug, a policy
//! that no longer allows it, or the server finishing the stream.
//!
//! The device is claimed only once the server said `Attached`: a refused device never leaves
//! its kernel driver. Control requests that change the device's state go through `usbfs` the
//! way Linux's `usbip-host` tweaks them (SET_CONFIGURATION, SET_INTERFACE, CLEAR_FEATURE
//! ENDPOINT_HALT); other control transfers, bulk and interrupt URBs go to the device as they
//! are; isochronous URBs are answered `-EOPNOTSUPP` per packet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nusb::descriptors::TransferType;
use nusb::transfer::{Bulk, ControlIn, ControlOut, ControlType, In, Interrupt, Out, Recipient};
use nusb::{Device, Interface};
use quinn::{RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wayray_protocol::framing::{self, FrameReader, FramingError};
use wayray_protocol::usb::usbip::{
    status, CmdSubmit, Command, CommandDecoder, Direction, IsoPacket, Reply, RetSubmit, RetUnlink,
    UsbipError, DEFAULT_MAX_TRANSFER,
};
use wayray_protocol::usb::UsbDeviceReply;
use wayray_protocol::StreamKind;

use super::transfer::{endpoint_task, errno, ret, EpMsg, InFlight, Replies};
use super::watch::Present;

/// A control transfer that takes longer is answered with an error (the device is hung).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `UsbDeviceReply` accepted.
const MAX_REPLY: u32 = 64 * 1024;
/// How long a stop waits for the device to give back URBs in flight.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot open the device stream")]
    Open(#[source] quinn::ConnectionError),
    #[error("cannot write to the device stream")]
    Write(#[source] quinn::WriteError),
    #[error("cannot read the device stream")]
    Read(#[source] quinn::ReadError),
    #[error("the server's answer on the device stream is malformed")]
    Framing(#[source] FramingError),
    #[error("the server finished the device stream before answering")]
    NoReply,
    #[error("the device is no longer there")]
    Gone,
    #[error("cannot take the device from its kernel driver")]
    Device(#[source] nusb::Error),
    #[error("the server's USB/IP bytes are malformed")]
    Usbip(#[source] UsbipError),
}

/// How forwarding one device ended.
#[derive(Debug)]
pub enum Ended {
    Refused(String),
    /// Unplugged or no longer allowed (the text says which); the stream was finished.
    Stopped(String),
    /// The server finished the stream (the session detached it).
    ServerFinished,
}

/// Forwards `present` over a new stream of `connection` until `stop` says why not any more.
pub async fn forward(
    connection: quinn::Connection,
    present: Present,
    mut stop: oneshot::Receiver<String>,
) -> Result<Ended, ForwardError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(ForwardError::Open)?;
    let mut opening = vec![StreamKind::Usb as u8];
    opening.extend(framing::encode(&present.info).map_err(ForwardError::Framing)?);
    send.write_all(&opening)
        .await
        .map_err(ForwardError::Write)?;
    let reply = tokio::select! {
        reply = read_reply(&mut recv) => reply?,
        reason = &mut stop => {
            let _ = send.finish();
            return Ok(Ended::Stopped(reason.unwrap_or_else(|_| "forwarding stopped".into())));
        }
    };
    let port = match reply {
        UsbDeviceReply::Refused { reason } => {
            let _ = send.finish();
            return Ok(Ended::Refused(reason));
        }
        UsbDeviceReply::Attached { port } => port,
    };
    let claimed = match claim(&present).await {
        Ok(claimed) => claimed,
        Err(e) => {
            let _ = send.finish();
            return Err(e);
        }
    };
    tracing::info!(busid = %present.info.busid, port, interfaces = claimed.interfaces.len(), "USB device forwarded");
    serve(claimed, send, recv, stop).await
}

async fn read_reply(recv: &mut RecvStream) -> Result<UsbDeviceReply, ForwardError> {
    let mut frames = FrameReader::new(MAX_REPLY);
    loop {
        if let Some(reply) = frames.next().map_err(ForwardError::Framing)? {
            return Ok(reply);
        }
        // Exactly the rest of the reply: the USB/IP bytes behind it belong to the decoder.
        match recv
            .read_chunk(frames.wanted(), true)
            .await
            .map_err(ForwardError::Read)?
        {
            Some(chunk) => frames.push(&chunk.bytes),
            None => return Err(ForwardError::NoReply),
        }
    }
}

/// The device opened with every interface of its active configuration claimed (kernel
/// drivers detached; nusb gives them back when the interfaces are dropped).
struct Claimed {
    device: Device,
    interfaces: Vec<Interface>,
}

async fn claim(present: &Present) -> Result<Claimed, ForwardError> {
    let info = nusb::list_devices()
        .await
        .map_err(ForwardError::Device)?
        .find(|d| {
            u32::from(d.busnum()) == present.busnum
                && u32::from(d.device_address()) == present.devnum
        })
        .ok_or(ForwardError::Gone)?;
    let device = info.open().await.map_err(ForwardError::Device)?;
    let numbers: Vec<u8> = match device.active_configuration() {
        Ok(config) => config.interfaces().map(|i| i.interface_number()).collect(),
        Err(_) => Vec::new(),
    };
    let mut interfaces = Vec::new();
    for number in numbers {
        interfaces.push(
            device
                .detach_and_claim_interface(number)
                .await
                .map_err(ForwardError::Device)?,
        );
    }
    Ok(Claimed { device, interfaces })
}

struct Worker {
    messages: mpsc::Sender<EpMsg>,
    task: JoinHandle<()>,
    interface: u8,
}

/// The reader's side of a served device.
struct Served {
    claimed: Claimed,
    workers: HashMap<u8, Worker>,
    replies: Replies,
    in_flight: InFlight,
}

async fn serve(
    claimed: Claimed,
    send: SendStream,
    mut recv: RecvStream,
    mut stop: oneshot::Receiver<String>,
) -> Result<Ended, ForwardError> {
    let (replies, replies_rx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(write_replies(send, replies_rx));
    let mut served = Served {
        claimed,
        workers: HashMap::new(),
        replies,
        in_flight: Arc::new(Mutex::new(HashMap::new())),
    };
    let mut decoder = CommandDecoder::new(DEFAULT_MAX_TRANSFER);
    let ended = loop {
        tokio::select! {
            reason = &mut stop => {
                break Ended::Stopped(reason.unwrap_or_else(|_| "forwarding stopped".into()));
            }
            chunk = recv.read_chunk(256 * 1024, true) => match chunk {
                Ok(Some(chunk)) => {
                    decoder.push(&chunk.bytes);
                    loop {
                        match decoder.next_command() {
                            Ok(Some(command)) => served.dispatch(command).await,
                            Ok(None) => break,
                            Err(e) => {
                                served.close().await;
                                return Err(ForwardError::Usbip(e));
                            }
                        }
                    }
                }
                Ok(None) => break Ended::ServerFinished,
                Err(e) => {
                    served.close().await;
                    return Err(ForwardError::Read(e));
                }
            },
            written = &mut writer => {
                served.close().await;
                return match written {
                    Ok(Err(e)) => Err(ForwardError::Write(e)),
                    _ => Err(ForwardError::Gone),
                };
            }
        }
    };
    // URBs in flight are cancelled and answered; then the stream ends after the last reply.
    served.close().await;
    drop(served);
    if let Ok(Ok(mut send)) = writer.await {
        let _ = send.finish();
    }
    Ok(ended)
}

async fn write_replies(
    mut send: SendStream,
    mut replies: mpsc::UnboundedReceiver<Reply>,
) -> Result<SendStream, quinn::WriteError> {
    let mut bytes = Vec::new();
    while let Some(reply) = replies.recv().await {
        bytes.clear();
        reply.encode(&mut bytes);
        // Whatever else is ready goes out in the same write.
        while bytes.len() < 1 << 20 {
            match replies.try_recv() {
                Ok(reply) => reply.encode(&mut bytes),
                Err(_) => break,
            }
        }
        send.write_all(&bytes).await?;
    }
    Ok(send)
}

impl Served {
    async fn dispatch(&mut self, command: Command) {
        match command {
            Command::Unlink(unlink) => {
                let endpoint = self
                    .in_flight
                    .lock()
                    .ok()
                    .and_then(|map| map.get(&unlink.unlink_seqnum).copied());
                let worker = endpoint.and_then(|ep| self.workers.get(&ep));
                let msg = EpMsg::Unlink {
                    seqnum: unlink.seqnum,
                    target: unlink.unlink_seqnum,
                };
                match worker {
                    Some(worker) if worker.messages.send(msg).await.is_ok() => {}
                    // Already answered (or never seen): nothing to stop.
                    _ => self.reply(Reply::Unlink(RetUnlink {
                        seqnum: unlink.seqnum,
                        status: status::OK,
                    })),
                }
            }
            Command::Submit(submit) if submit.ep == 0 => {
                let reply = self.control(submit).await;
                self.reply(reply);
            }
            Command::Submit(submit) => self.submit(submit).await,
        }
    }

    fn reply(&self, reply: Reply) {
        let _ = self.replies.send(reply);
    }

    async fn submit(&mut self, submit: CmdSubmit) {
        let address = endpoint_address(submit.ep, submit.direction);
        if submit.number_of_packets > 0 {
            // Isochronous: not forwarded (yet). Every packet is answered, so vhci-hcd's
            // bookkeeping stays whole.
            let iso: Vec<IsoPacket> = submit
                .iso
                .iter()
                .map(|p| IsoPacket {
                    actual_length: 0,
                    status: status::EOPNOTSUPP,
                    ..*p
                })
                .collect();
            self.reply(Reply::Submit(RetSubmit {
                seqnum: submit.seqnum,
                status: status::EOPNOTSUPP,
                actual_length: 0,
                start_frame: 0,
                number_of_packets: submit.number_of_packets,
                error_count: iso.len() as i32,
                data: Vec::new(),
                iso,
            }));
            return;
        }
        let seqnum = submit.seqnum;
        let Some(messages) = self.worker(address) else {
            self.reply(ret(seqnum, status::EPIPE));
            return;
        };
        if let Ok(mut map) = self.in_flight.lock() {
            map.insert(seqnum, address);
        }
        if messages.send(EpMsg::Submit(submit)).await.is_err() {
            if let Ok(mut map) = self.in_flight.lock() {
                map.remove(&seqnum);
            }
            self.reply(ret(seqnum, status::ESHUTDOWN));
        }
    }

    /// The task serving `address`, started on first use from the interfaces' current
    /// alternate settings; `None` if no claimed interface has it (or it is isochronous).
    fn worker(&mut self, address: u8) -> Option<mpsc::Sender<EpMsg>> {
        if let Some(worker) = self.workers.get(&address) {
            if !worker.task.is_finished() {
                return Some(worker.messages.clone());
            }
        }
        let (interface, kind) = self.claimed.interfaces.iter().find_map(|i| {
            let descriptor = i.descriptor()?;
            let ep = descriptor.endpoints().find(|e| e.address() == address)?;
            Some((i.clone(), ep.transfer_type()))
        })?;
        let (messages, rx) = mpsc::channel(64);
        let (replies, in_flight) = (self.replies.clone(), self.in_flight.clone());
        let is_in = address & 0x80 != 0;
        let task = match (kind, is_in) {
            (TransferType::Bulk, true) => {
                let ep = interface.endpoint::<Bulk, In>(address).ok()?;
                tokio::spawn(endpoint_task(ep, rx, replies, in_flight))
            }
            (TransferType::Bulk, false) => {
                let ep = interface.endpoint::<Bulk, Out>(address).ok()?;
                tokio::spawn(endpoint_task(ep, rx, replies, in_flight))
            }
            (TransferType::Interrupt, true) => {
                let ep = interface.endpoint::<Interrupt, In>(address).ok()?;
                tokio::spawn(endpoint_task(ep, rx, replies, in_flight))
            }
            (TransferType::Interrupt, false) => {
                let ep = interface.endpoint::<Interrupt, Out>(address).ok()?;
                tokio::spawn(endpoint_task(ep, rx, replies, in_flight))
            }
            _ => return None,
        };
        let number = interface.interface_number();
        self.workers.insert(
            address,
            Worker {
                messages: messages.clone(),
                task,
                interface: number,
            },
        );
        Some(messages)
    }

    /// Ends the endpoint tasks of one interface (`None`: all), each answering what it had in
    /// flight, so the interface can change its alternate setting or be released.
    async fn close_workers(&mut self, interface: Option<u8>) {
        let addresses: Vec<u8> = self
            .workers
            .iter()
            .filter(|(_, w)| interface.is_none_or(|i| w.interface == i))
            .map(|(a, _)| *a)
            .collect();
        for address in addresses {
            if let Some(worker) = self.workers.remove(&address) {
                drop(worker.messages);
                let abort = worker.task.abort_handle();
                if tokio::time::timeout(DRAIN, worker.task).await.is_err() {
                    abort.abort();
                }
            }
        }
    }

    async fn close(&mut self) {
        self.close_workers(None).await;
    }

    /// A control URB on endpoint 0.
    async fn control(&mut self, submit: CmdSubmit) -> Reply {
        let setup = submit.setup;
        let (request_type, request) = (setup[0], setup[1]);
        let value = u16::from_le_bytes([setup[2], setup[3]]);
        let index = u16::from_le_bytes([setup[4], setup[5]]);
        let length = u16::from_le_bytes([setup[6], setup[7]]);
        let seqnum = submit.seqnum;
        match (request_type, request) {
            // SET_CONFIGURATION: the appliance's kernel configured the device already; the
            // same configuration again is a no-op, another one is not offered.
            (0x00, 0x09) => {
                let active = self
                    .claimed
                    .device
                    .active_configuration()
                    .map(|c| u16::from(c.configuration_value()))
                    .ok();
                if active == Some(value) {
                    ret(seqnum, status::OK)
                } else {
                    tracing::warn!(
                        ?active,
                        wanted = value,
                        "SET_CONFIGURATION to another configuration is not forwarded"
                    );
                    ret(seqnum, status::EPIPE)
                }
            }
            // SET_INTERFACE: through usbfs, after the interface's endpoints are closed.
            (0x01, 0x0b) => {
                self.close_workers(Some(index as u8)).await;
                let interface = self
                    .claimed
                    .interfaces
                    .iter()
                    .find(|i| u16::from(i.interface_number()) == index)
                    .cloned();
                let code = match interface {
                    Some(interface) => match interface.set_alt_setting(value as u8).await {
                        Ok(()) => status::OK,
                        Err(e) => {
                            tracing::debug!(error = %e, "SET_INTERFACE failed");
                            status::EPIPE
                        }
                    },
                    None => status::EPIPE,
                };
                ret(seqnum, code)
            }
            // CLEAR_FEATURE(ENDPOINT_HALT): usbfs clears the halt and the host's data toggle.
            (0x02, 0x01) if value == 0 => {
                let Some(messages) = self.worker(index as u8) else {
                    return ret(seqnum, status::EPIPE);
                };
                let (answer, code) = oneshot::channel();
                if messages.send(EpMsg::ClearHalt(answer)).await.is_err() {
                    return ret(seqnum, status::ESHUTDOWN);
                }
                ret(seqnum, code.await.unwrap_or(status::ESHUTDOWN))
            }
            _ => {
                self.raw_control(submit, request_type, request, value, index, length)
                    .await
            }
        }
    }

    async fn raw_control(
        &self,
        submit: CmdSubmit,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        length: u16,
    ) -> Reply {
        let seqnum = submit.seqnum;
        let control_type = match (request_type >> 5) & 3 {
            0 => ControlType::Standard,
            1 => ControlType::Class,
            2 => ControlType::Vendor,
            _ => return ret(seqnum, status::EPIPE),
        };
        let recipient = match request_type & 0x1f {
            0 => Recipient::Device,
            1 => Recipient::Interface,
            2 => Recipient::Endpoint,
            3 => Recipient::Other,
            _ => return ret(seqnum, status::EPIPE),
        };
        let device = &self.claimed.device;
        if request_type & 0x80 != 0 {
            let length = length.min(submit.transfer_buffer_length.min(u16::MAX as u32) as u16);
            let result = device
                .control_in(
                    ControlIn {
                        control_type,
                        recipient,
                        request,
                        value,
                        index,
                        length,
                    },
                    CONTROL_TIMEOUT,
                )
                .await;
            match result {
                Ok(data) => Reply::Submit(RetSubmit {
                    seqnum,
                    status: status::OK,
                    actual_length: data.len() as u32,
                    start_frame: 0,
                    number_of_packets: 0,
                    error_count: 0,
                    data,
                    iso: Vec::new(),
                }),
                Err(e) => ret(seqnum, errno(e)),
            }
        } else {
            let result = device
                .control_out(
                    ControlOut {
                        control_type,
                        recipient,
                        request,
                        value,
                        index,
                        data: &submit.data,
                    },
                    CONTROL_TIMEOUT,
                )
                .await;
            match result {
                Ok(()) => Reply::Submit(RetSubmit {
                    seqnum,
                    status: status::OK,
                    actual_length: submit.data.len() as u32,
                    start_frame: 0,
                    number_of_packets: 0,
                    error_count: 0,
                    data: Vec::new(),
                    iso: Vec::new(),
                }),
                Err(e) => ret(seqnum, errno(e)),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for worker in self.workers.values() {
            worker.task.abort();
        }
    }
}

/// USB/IP's endpoint number and direction → the endpoint address.
fn endpoint_address(ep: u32, direction: Direction) -> u8 {
    (ep & 0x0f) as u8 | if direction == Direction::In { 0x80 } else { 0 }
}
