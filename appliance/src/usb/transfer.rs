//! URBs on the real device: one task per endpoint keeps several transfers in flight (in order,
//! as the endpoint queue of `usbfs` does) and answers each with a `RET_SUBMIT` carrying its
//! seqnum.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use nusb::transfer::{Buffer, BulkOrInterrupt, Completion, EndpointDirection, TransferError};
use nusb::Endpoint;
use tokio::sync::{mpsc, oneshot};
use wayray_protocol::usb::usbip::{
    status, transfer_flags, CmdSubmit, Direction, Reply, RetSubmit, RetUnlink,
};

/// URBs one endpoint keeps submitted at once: enough that a USB 2 stick's bulk reads never wait
/// for the network (Linux's usb-storage sends one at a time per direction, vhci more for others).
pub const MAX_IN_FLIGHT: usize = 32;

/// Replies on their way to the stream's writer.
pub type Replies = mpsc::UnboundedSender<Reply>;

/// seqnum → endpoint address of every URB submitted to an endpoint task and not yet answered,
/// so a `CMD_UNLINK` finds its task.
pub type InFlight = Arc<Mutex<HashMap<u32, u8>>>;

/// What the stream's reader hands an endpoint task.
#[derive(Debug)]
pub enum EpMsg {
    Submit(CmdSubmit),
    /// `CMD_UNLINK` `seqnum` of the URB `target`.
    Unlink {
        seqnum: u32,
        target: u32,
    },
    /// CLEAR_FEATURE(ENDPOINT_HALT): after the URBs before it finished; answers a status.
    ClearHalt(oneshot::Sender<i32>),
}

/// A URB submitted to the device.
struct Submitted {
    seqnum: u32,
    requested: usize,
    short_not_ok: bool,
    is_in: bool,
    /// The `CMD_UNLINK` seqnum that cancelled it.
    unlinked_by: Option<u32>,
}

/// Linux status for a transfer error.
pub fn errno(error: TransferError) -> i32 {
    match error {
        TransferError::Cancelled => status::ECONNRESET,
        TransferError::Stall => status::EPIPE,
        TransferError::Disconnected => status::ESHUTDOWN,
        TransferError::Fault => status::EPROTO,
        TransferError::InvalidArgument => status::EINVAL,
        TransferError::Unknown(code) => -(code.min(4095) as i32),
    }
}

/// A `RET_SUBMIT` with no data.
pub fn ret(seqnum: u32, status: i32) -> Reply {
    Reply::Submit(RetSubmit {
        seqnum,
        status,
        actual_length: 0,
        start_frame: 0,
        number_of_packets: 0,
        error_count: 0,
        data: Vec::new(),
        iso: Vec::new(),
    })
}

enum Event {
    Message(Option<EpMsg>),
    Done(Completion),
}

/// Serves one bulk or interrupt endpoint until the reader drops its sender; then cancels what
/// is still in flight and answers it.
pub async fn endpoint_task<T: BulkOrInterrupt, D: EndpointDirection>(
    mut ep: Endpoint<T, D>,
    mut messages: mpsc::Receiver<EpMsg>,
    replies: Replies,
    in_flight: InFlight,
) {
    let mut queue: VecDeque<Submitted> = VecDeque::new();
    let max_packet = ep.max_packet_size().max(1);
    let complete = |queue: &mut VecDeque<Submitted>, c: Completion| {
        let Some(urb) = queue.pop_front() else {
            return;
        };
        let c_ok = match c.status {
            Err(TransferError::Cancelled) => Err(()),
            _ => Ok(()),
        };
        let reply = match urb.unlinked_by {
            // Cancelled for its CMD_UNLINK: RET_UNLINK instead of RET_SUBMIT (usbip-host does
            // the same), unless it finished first.
            Some(unlink) if c.status == Err(TransferError::Cancelled) => Reply::Unlink(RetUnlink {
                seqnum: unlink,
                status: status::ECONNRESET,
            }),
            _ => {
                let mut data = if urb.is_in {
                    c.buffer.into_vec()
                } else {
                    Vec::new()
                };
                let mut code = match c.status {
                    Ok(()) => status::OK,
                    Err(e) => errno(e),
                };
                let actual = if urb.is_in { data.len() } else { c.actual_len };
                if urb.is_in && data.len() > urb.requested {
                    // Read rounded up to whole packets (below); more than asked is babble.
                    data.truncate(urb.requested);
                    if code == status::OK {
                        code = status::EOVERFLOW;
                    }
                }
                if code == status::OK && urb.short_not_ok && actual < urb.requested {
                    code = status::EREMOTEIO;
                }
                Reply::Submit(RetSubmit {
                    seqnum: urb.seqnum,
                    status: code,
                    actual_length: if urb.is_in { data.len() } else { actual } as u32,
                    start_frame: 0,
                    number_of_packets: 0,
                    error_count: 0,
                    data,
                    iso: Vec::new(),
                })
            }
        };
        // Queued for the writer before the URB leaves `in_flight`: an unlink that no longer
        // finds it is answered after this reply, as the spec orders them.
        let _ = replies.send(reply);
        if let (Some(unlink), Ok(())) = (urb.unlinked_by, c_ok) {
            // Finished before the cancel took: its RET_SUBMIT went first, and the unlink
            // found nothing to stop (vhci-hcd resets the link on a RET_SUBMIT it gave back).
            let _ = replies.send(Reply::Unlink(RetUnlink {
                seqnum: unlink,
                status: status::OK,
            }));
        }
        if let Ok(mut map) = in_flight.lock() {
            map.remove(&urb.seqnum);
        }
    };
    loop {
        let event = poll_fn(|cx| {
            if ep.pending() > 0 {
                if let Poll::Ready(c) = ep.poll_next_complete(cx) {
                    return Poll::Ready(Event::Done(c));
                }
            }
            if ep.pending() < MAX_IN_FLIGHT {
                if let Poll::Ready(m) = messages.poll_recv(cx) {
                    return Poll::Ready(Event::Message(m));
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Done(c) => complete(&mut queue, c),
            Event::Message(None) => break,
            Event::Message(Some(EpMsg::Submit(cmd))) => {
                let is_in = cmd.direction == Direction::In;
                let requested = cmd.transfer_buffer_length as usize;
                if is_in && requested == 0 {
                    let _ = replies.send(ret(cmd.seqnum, status::OK));
                    if let Ok(mut map) = in_flight.lock() {
                        map.remove(&cmd.seqnum);
                    }
                    continue;
                }
                let buffer = if is_in {
                    // usbfs reads whole packets; the excess is cut off again on completion.
                    Buffer::new(requested.div_ceil(max_packet) * max_packet)
                } else {
                    Buffer::from(cmd.data)
                };
                ep.submit(buffer);
                queue.push_back(Submitted {
                    seqnum: cmd.seqnum,
                    requested,
                    short_not_ok: cmd.transfer_flags & transfer_flags::URB_SHORT_NOT_OK != 0,
                    is_in,
                    unlinked_by: None,
                });
            }
            Event::Message(Some(EpMsg::Unlink { seqnum, target })) => {
                match queue.iter_mut().find(|u| u.seqnum == target) {
                    Some(urb) => {
                        // usbfs cancels per endpoint only: URBs queued behind it are
                        // cancelled too and answered -ECONNRESET (see README).
                        urb.unlinked_by = Some(seqnum);
                        ep.cancel_all();
                    }
                    None => {
                        let _ = replies.send(Reply::Unlink(RetUnlink {
                            seqnum,
                            status: status::OK,
                        }));
                    }
                }
            }
            Event::Message(Some(EpMsg::ClearHalt(answer))) => {
                while ep.pending() > 0 {
                    let c = ep.next_complete().await;
                    complete(&mut queue, c);
                }
                let code = match ep.clear_halt().await {
                    Ok(()) => status::OK,
                    Err(e) => {
                        tracing::debug!(error = %e, endpoint = ep.endpoint_address(), "clear halt failed");
                        status::EPIPE
                    }
                };
                let _ = answer.send(code);
            }
        }
    }
    ep.cancel_all();
    while ep.pending() > 0 {
        let c = ep.next_complete().await;
        complete(&mut queue, c);
    }
}
