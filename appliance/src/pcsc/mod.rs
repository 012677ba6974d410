//! The session's PC/SC, run here: each [`StreamKind::Pcsc`] stream the server opens is one
//! PC/SC context of a program in the session, whose operations (see `wayray_protocol::pcsc`)
//! run against this appliance's pcscd on one blocking thread per stream.
//!
//! The session sees one reader: the one the token is read from (`--card-reader`), and nothing
//! when the appliance follows none. The appliance keeps reading that reader for the token
//! meanwhile: a session's `SCARD_SHARE_EXCLUSIVE` is run as `SCARD_SHARE_SHARED`, so no program
//! in a session can lock the appliance out of its own card reader. (Transactions still give a
//! session's program the card alone for their length, as PC/SC means them to.)
//!
//! [`StreamKind::Pcsc`]: wayray_protocol::StreamKind::Pcsc

mod lender;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex, PoisonError,
};

use quinn::{RecvStream, SendStream};
use wayray_protocol::{
    framing,
    pcsc::{PcscReply, PcscRequest, MAX_PCSC_MESSAGE_LEN},
    FrameReader, StreamKind,
};

use crate::card::FollowedReader;

/// Takes a bidirectional stream the server opened: a PC/SC stream is served on its own task
/// (and thread) until either side ends it; any other kind is refused by stopping the stream.
pub fn accept(send: SendStream, recv: RecvStream, reader: Option<FollowedReader>) {
    tokio::spawn(async move {
        let (send, mut recv) = (send, recv);
        let mut kind = [0u8];
        if recv.read_exact(&mut kind).await.is_err() {
            return;
        }
        match StreamKind::from_byte(kind[0]) {
            Some(StreamKind::Pcsc) => serve(send, recv, reader).await,
            other => {
                tracing::warn!(
                    kind = kind[0],
                    ?other,
                    "refusing a bidirectional stream of this kind"
                );
                let _ = recv.stop(0u32.into());
            }
        }
    });
}

async fn serve(mut send: SendStream, mut recv: RecvStream, reader: Option<FollowedReader>) {
    let (requests, requests_rx) = std::sync::mpsc::channel::<PcscRequest>();
    let (replies_tx, mut replies) = tokio::sync::mpsc::unbounded_channel::<PcscReply>();
    let waker = Arc::new(Waker::default());
    let thread = std::thread::Builder::new().name("pcsc-lend".into()).spawn({
        let waker = Arc::clone(&waker);
        move || lender::run(requests_rx, replies_tx, reader, &waker)
    });
    if let Err(err) = thread {
        tracing::warn!(%err, "cannot start a PC/SC thread for the session");
        return;
    }
    let mut frames = FrameReader::new(MAX_PCSC_MESSAGE_LEN);
    // WaitChange requests the thread has not answered yet.
    let mut waits = 0usize;
    let result: Result<(), String> = async {
        loop {
            tokio::select! {
                chunk = recv.read_chunk(64 * 1024, true) => {
                    match chunk.map_err(|e| e.to_string())? {
                        Some(chunk) => frames.push(&chunk.bytes),
                        None => return Ok(()),
                    }
                    while let Some(request) = frames.next::<PcscRequest>().map_err(|e| e.to_string())? {
                        match request {
                            PcscRequest::StopWaiting => {
                                if waits > 0 {
                                    waker.stop().await;
                                }
                            }
                            request => {
                                if matches!(request, PcscRequest::WaitChange { .. }) {
                                    waits += 1;
                                }
                                requests.send(request).map_err(|_| "the PC/SC thread ended".to_string())?;
                            }
                        }
                    }
                }
                reply = replies.recv() => {
                    let Some(reply) = reply else {
                        return Err("the PC/SC thread ended".into());
                    };
                    if matches!(reply, PcscReply::WaitEnded { .. }) {
                        waits = waits.saturating_sub(1);
                    }
                    let bytes = framing::encode(&reply).map_err(|e| e.to_string())?;
                    send.write_all(&bytes).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(%err, "PC/SC stream ended");
    }
    // The thread sees the channel close, disconnects the session's cards and releases its
    // context; a wait in progress is woken first.
    drop(requests);
    waker.stop().await;
    let _ = send.finish();
}

/// Wakes the thread out of a wait for reader changes.
#[derive(Default)]
pub(crate) struct Waker {
    stop: AtomicBool,
    /// The context the thread waits in, for SCardCancel.
    context: Mutex<Option<::pcsc::Context>>,
}

impl Waker {
    async fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let context = self
            .context
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(context) = context {
            // SCardCancel talks to pcscd: off the async threads.
            let _ = tokio::task::spawn_blocking(move || context.cancel()).await;
        }
    }

    /// Whether a stop came (and forgets it).
    fn take_stop(&self) -> bool {
        self.stop.swap(false, Ordering::SeqCst)
    }

    fn set_context(&self, context: Option<::pcsc::Context>) {
        *self.context.lock().unwrap_or_else(PoisonError::into_inner) = context;
    }
}
