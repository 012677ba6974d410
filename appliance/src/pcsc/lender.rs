//! The blocking side of one PC/SC stream: a context at this appliance's pcscd and the cards
//! the session's program connected through it.

use std::{collections::HashMap, ffi::CString, ptr::NonNull, sync::mpsc, time::Duration};

use ::pcsc::{
    Attribute, Card, Context, Disposition, Error as PcscError, Protocols, ReaderState, Scope,
    ShareMode, State, Transaction,
};
use tokio::sync::mpsc::UnboundedSender;
use wayray_protocol::pcsc::{codes, PcscReply, PcscRequest, ReaderInfo};

use super::Waker;
use crate::card::FollowedReader;

/// How long one wait in pcscd lasts before the thread looks at its stop flag again (a
/// SCardCancel normally wakes it at once).
const POLL: Duration = Duration::from_secs(1);
/// The most a card's or reader's answer may hold (an extended APDU's answer).
const MAX_RESPONSE: usize = 4 + 3 + (1 << 16) + 3 + 2;

/// Runs the stream's requests in order until the stream ends.
pub(super) fn run(
    requests: mpsc::Receiver<PcscRequest>,
    replies: UnboundedSender<PcscReply>,
    reader: Option<FollowedReader>,
    waker: &Waker,
) {
    let mut lender = Lender {
        context: None,
        cards: HashMap::new(),
        next: 1,
        reader,
    };
    for request in requests {
        tracing::trace!(?request, "PC/SC request from the session");
        let reply = lender.run(request, waker);
        if replies.send(reply).is_err() {
            break;
        }
    }
    waker.set_context(None);
    for (_, mut lent) in lender.cards.drain() {
        if let Some(card) = lent.take_card() {
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

struct Lender {
    context: Option<Context>,
    cards: HashMap<u32, Lent>,
    next: u32,
    reader: Option<FollowedReader>,
}

impl Lender {
    fn run(&mut self, request: PcscRequest, waker: &Waker) -> PcscReply {
        let result = match request {
            PcscRequest::Establish => Context::establish(Scope::User).map(|context| {
                waker.set_context(Some(context.clone()));
                self.context = Some(context);
                PcscReply::Done
            }),
            PcscRequest::Readers => self.readers().map(PcscReply::Readers),
            PcscRequest::WaitChange { seen } => self.wait(&seen, waker),
            // Handled by the stream's task.
            PcscRequest::StopWaiting => Ok(PcscReply::WaitEnded { changed: false }),
            PcscRequest::Connect {
                reader,
                share_mode,
                protocols,
            } => self.connect(&reader, share_mode, protocols),
            PcscRequest::Reconnect {
                card,
                share_mode,
                protocols,
                initialization,
            } => self.card(card).and_then(|lent| {
                let mode = share(share_mode)?;
                let init = disposition(initialization);
                lent.with_mut(|c| {
                    c.reconnect(
                        mode,
                        Protocols::from_bits_truncate(u64::from(protocols)),
                        init,
                    )
                })?;
                let protocol = lent.protocol()?;
                Ok(PcscReply::Reconnected { protocol })
            }),
            PcscRequest::Disconnect {
                card,
                disposition: d,
            } => match self.cards.remove(&card) {
                None => Err(PcscError::InvalidHandle),
                Some(mut lent) => match lent.take_card() {
                    Some(c) => c.disconnect(disposition(d)).map_err(|(_, e)| e),
                    None => Ok(()),
                }
                .map(|()| PcscReply::Done),
            },
            PcscRequest::BeginTransaction { card } => {
                self.card(card).and_then(|lent| lent.begin_transaction())
            }
            PcscRequest::EndTransaction {
                card,
                disposition: d,
            } => self
                .card(card)
                .and_then(|lent| lent.finish_transaction(disposition(d))),
            PcscRequest::Transmit {
                card,
                apdu,
                max_response,
            } => self.card(card).and_then(|lent| {
                let mut buffer = vec![0u8; (max_response as usize).clamp(2, MAX_RESPONSE)];
                let response = lent.with(|c| c.transmit(&apdu, &mut buffer).map(<[u8]>::to_vec))?;
                Ok(PcscReply::Transmitted { response })
            }),
            PcscRequest::Control {
                card,
                code,
                data,
                max_response,
            } => self.card(card).and_then(|lent| {
                let mut buffer = vec![0u8; (max_response as usize).min(MAX_RESPONSE)];
                let response = lent.with(|c| {
                    c.control(u64::from(code), &data, &mut buffer)
                        .map(<[u8]>::to_vec)
                })?;
                Ok(PcscReply::Controlled { response })
            }),
            PcscRequest::Status { card } => self.card(card).and_then(|lent| {
                let status = lent.with(|c| c.status2_owned())?;
                Ok(PcscReply::Status {
                    state: status.status().bits() as u32,
                    protocol: status.protocol2().map_or(0, protocol_bits),
                    atr: status.atr().to_vec(),
                })
            }),
            PcscRequest::GetAttrib {
                card,
                attribute,
                max_len,
            } => self.card(card).and_then(|lent| {
                let attribute = known_attribute(attribute).ok_or(PcscError::UnsupportedFeature)?;
                let value = lent.with(|c| c.get_attribute_owned(attribute))?;
                if value.len() > max_len as usize {
                    return Err(PcscError::InsufficientBuffer);
                }
                Ok(PcscReply::Attribute { value })
            }),
            PcscRequest::SetAttrib {
                card,
                attribute,
                value,
            } => self.card(card).and_then(|lent| {
                let attribute = known_attribute(attribute).ok_or(PcscError::UnsupportedFeature)?;
                lent.with(|c| c.set_attribute(attribute, &value))?;
                Ok(PcscReply::Done)
            }),
        };
        result.unwrap_or_else(|error| PcscReply::Failed { code: error as u32 })
    }

    fn context(&self) -> Result<&Context, PcscError> {
        self.context.as_ref().ok_or(PcscError::InvalidHandle)
    }

    fn card(&mut self, card: u32) -> Result<&mut Lent, PcscError> {
        self.cards.get_mut(&card).ok_or(PcscError::InvalidHandle)
    }

    /// The reader lent to the session, as pcscd sees it now (none when the appliance follows
    /// no reader, or pcscd does not know it at the moment).
    fn readers(&self) -> Result<Vec<ReaderInfo>, PcscError> {
        let Some(name) = self.reader.as_ref().and_then(FollowedReader::name) else {
            return Ok(Vec::new());
        };
        let Ok(cname) = CString::new(name.clone()) else {
            return Ok(Vec::new());
        };
        let mut states = [ReaderState::new(cname, State::UNAWARE)];
        match self
            .context()?
            .get_status_change(Duration::ZERO, &mut states)
        {
            Ok(()) => {}
            Err(PcscError::Timeout | PcscError::UnknownReader | PcscError::NoReadersAvailable) => {
                return Ok(Vec::new())
            }
            Err(error) => return Err(error),
        }
        let state = &states[0];
        let event = state.event_state();
        if event.intersects(State::UNKNOWN | State::IGNORE) {
            return Ok(Vec::new());
        }
        let bits = (event.bits() & 0xffff & !(State::CHANGED.bits())) as u32;
        let protocol = self
            .cards
            .values()
            .find_map(|lent| lent.protocol().ok())
            .unwrap_or(0);
        Ok(vec![ReaderInfo {
            name,
            state: bits,
            events: (state.event_count() & 0xffff) as u16,
            atr: state.atr().to_vec(),
            protocol,
        }])
    }

    /// Returns once the lent readers differ from `seen`, or a stop came.
    fn wait(&self, seen: &[ReaderInfo], waker: &Waker) -> Result<PcscReply, PcscError> {
        loop {
            if waker.take_stop() {
                return Ok(PcscReply::WaitEnded { changed: false });
            }
            let now = self.readers()?;
            if !same(&now, seen) {
                return Ok(PcscReply::WaitEnded { changed: true });
            }
            let Some(reader) = now.first() else {
                // No reader to wait on: look again (the followed reader may come back).
                std::thread::sleep(Duration::from_millis(250).min(POLL));
                continue;
            };
            let Ok(name) = CString::new(reader.name.clone()) else {
                return Ok(PcscReply::WaitEnded { changed: true });
            };
            let current =
                State::from_bits_retain(u64::from(reader.state) | (u64::from(reader.events) << 16));
            let mut states = [ReaderState::new(name, current)];
            match self.context()?.get_status_change(POLL, &mut states) {
                Ok(()) | Err(PcscError::Timeout | PcscError::Cancelled) => {}
                Err(error) => return Err(error),
            }
        }
    }

    fn connect(
        &mut self,
        reader: &str,
        share_mode: u32,
        protocols: u32,
    ) -> Result<PcscReply, PcscError> {
        let lent = self.reader.as_ref().and_then(FollowedReader::name);
        if lent.as_deref() != Some(reader) {
            return Err(PcscError::UnknownReader);
        }
        let name = CString::new(reader).map_err(|_| PcscError::InvalidParameter)?;
        let mode = share(share_mode)?;
        let card = self.context()?.connect(
            &name,
            mode,
            Protocols::from_bits_truncate(u64::from(protocols)),
        )?;
        let lent = Lent::new(card);
        let protocol = lent.protocol()?;
        let id = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        self.cards.insert(id, lent);
        tracing::info!(reader, share_mode, "the session connected to the card");
        Ok(PcscReply::Connected { card: id, protocol })
    }
}

/// Whether two reader lists describe the same readers in the same state (what a session's
/// program would see change).
fn same(a: &[ReaderInfo], b: &[ReaderInfo]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name && x.state == y.state && x.events == y.events && x.atr == y.atr
        })
}

/// The session's share mode, as the appliance allows it: exclusive becomes shared.
fn share(mode: u32) -> Result<ShareMode, PcscError> {
    match mode {
        codes::SCARD_SHARE_EXCLUSIVE | codes::SCARD_SHARE_SHARED => Ok(ShareMode::Shared),
        codes::SCARD_SHARE_DIRECT => Ok(ShareMode::Direct),
        _ => Err(PcscError::InvalidValue),
    }
}

fn disposition(raw: u32) -> Disposition {
    match raw {
        1 => Disposition::ResetCard,
        2 => Disposition::UnpowerCard,
        3 => Disposition::EjectCard,
        _ => Disposition::LeaveCard,
    }
}

fn protocol_bits(protocol: ::pcsc::Protocol) -> u32 {
    match protocol {
        ::pcsc::Protocol::T0 => 1,
        ::pcsc::Protocol::T1 => 2,
        ::pcsc::Protocol::RAW => 4,
    }
}

/// The attributes the `pcsc` crate can name (it takes no raw numbers).
fn known_attribute(raw: u32) -> Option<Attribute> {
    use Attribute::*;
    [
        VendorName,
        VendorIfdType,
        VendorIfdVersion,
        VendorIfdSerialNo,
        ChannelId,
        AsyncProtocolTypes,
        DefaultClk,
        MaxClk,
        DefaultDataRate,
        MaxDataRate,
        MaxIfsd,
        SyncProtocolTypes,
        PowerMgmtSupport,
        Characteristics,
        CurrentProtocolType,
        CurrentClk,
        CurrentF,
        CurrentD,
        CurrentN,
        CurrentW,
        CurrentIfsc,
        CurrentIfsd,
        CurrentBwt,
        CurrentCwt,
        CurrentEbcEncoding,
        ExtendedBwt,
        IccPresence,
        IccInterfaceStatus,
        CurrentIoState,
        AtrString,
        IccTypePerAtr,
        Maxinput,
        DeviceUnit,
        DeviceInUse,
        DeviceFriendlyName,
        DeviceSystemName,
    ]
    .into_iter()
    .find(|a| *a as u32 == raw)
}

/// A card the session connected, and its transaction while one is open.
///
/// A session's transaction spans requests, but the `pcsc` crate's [`Transaction`] borrows its
/// card: the card lives on the heap behind a raw pointer, and while a transaction is open it is
/// reached only through that transaction, so no two live paths to it are used at once.
struct Lent {
    transaction: Option<Transaction<'static>>,
    /// From `Box::into_raw`; freed in `take_card` or `Drop`, after the transaction ended.
    card: Option<NonNull<Card>>,
}

impl Lent {
    fn new(card: Card) -> Self {
        Self {
            transaction: None,
            card: Some(NonNull::from(Box::leak(Box::new(card)))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Card) -> Result<T, PcscError>) -> Result<T, PcscError> {
        match (&self.transaction, self.card) {
            (Some(transaction), _) => f(transaction),
            // SAFETY: no transaction borrows the card now; the pointer is live until freed.
            (None, Some(card)) => f(unsafe { card.as_ref() }),
            (None, None) => Err(PcscError::InvalidHandle),
        }
    }

    fn with_mut<T>(
        &mut self,
        f: impl FnOnce(&mut Card) -> Result<T, PcscError>,
    ) -> Result<T, PcscError> {
        // Reconnecting inside a transaction: end it first (the crate cannot reconnect through
        // a transaction it does not own).
        self.end_transaction(Disposition::LeaveCard);
        match self.card {
            // SAFETY: the transaction (the only other path to the card) has ended.
            Some(mut card) => f(unsafe { card.as_mut() }),
            None => Err(PcscError::InvalidHandle),
        }
    }

    /// The card itself, to disconnect it; its transaction ends first.
    fn take_card(&mut self) -> Option<Card> {
        self.end_transaction(Disposition::LeaveCard);
        // SAFETY: from `Box::leak` in `new`, taken once; nothing borrows it any more.
        self.card
            .take()
            .map(|card| *unsafe { Box::from_raw(card.as_ptr()) })
    }

    fn protocol(&self) -> Result<u32, PcscError> {
        self.with(|c| c.status2_owned())
            .map(|s| s.protocol2().map_or(0, protocol_bits))
    }

    fn begin_transaction(&mut self) -> Result<PcscReply, PcscError> {
        if self.transaction.is_some() {
            return Ok(PcscReply::Done);
        }
        let Some(mut card) = self.card else {
            return Err(PcscError::InvalidHandle);
        };
        // SAFETY: the card stays at this address until `take_card`/`Drop`, which end the
        // transaction before freeing it; while the transaction lives the card is used only
        // through it (`with`, `with_mut`).
        let transaction = unsafe { card.as_mut() }.transaction()?;
        self.transaction = Some(transaction);
        Ok(PcscReply::Done)
    }

    fn finish_transaction(&mut self, disposition: Disposition) -> Result<PcscReply, PcscError> {
        match self.transaction.take() {
            None => Err(PcscError::NotTransacted),
            Some(transaction) => transaction
                .end(disposition)
                .map(|()| PcscReply::Done)
                .map_err(|(transaction, error)| {
                    // Dropping it ends it with LeaveCard.
                    drop(transaction);
                    error
                }),
        }
    }

    fn end_transaction(&mut self, disposition: Disposition) {
        if self.transaction.is_some() {
            let _ = self.finish_transaction(disposition);
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // Disconnects with LeaveCard (the crate's `Card` drop).
        drop(self.take_card());
    }
}
