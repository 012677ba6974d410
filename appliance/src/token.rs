//! The token this appliance presents to the server: the smart card's when one is in the reader,
//! else its pseudo-token (`pseudo.<short id>` of its certificate, which the server derives the
//! same way), unless a card is required (then none, and the screen asks for a card).

use tokio::sync::watch;

use crate::card::{CardError, CardProver, CardWatcher, FollowedReader};

/// How the appliance decides who is at it (`--card`, `--card-reader`, `--require-card`,
/// `--token`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Follow a PC/SC card reader (this one by name, or the first one when `Some("")`).
    pub card_reader: Option<String>,
    /// With no card in the reader, present no token rather than the pseudo-token.
    pub require_card: bool,
    /// A fixed token instead of cards and the pseudo-token (kiosks, tests).
    pub fixed: Option<String>,
}

pub struct Tokens {
    card: Option<watch::Receiver<Option<String>>>,
    prover: Option<CardProver>,
    followed: Option<FollowedReader>,
    _watcher: Option<CardWatcher>,
    pseudo: String,
    require_card: bool,
    fixed: Option<String>,
}

impl Tokens {
    /// Starts following the card reader, if any. pcscd may start after the appliance: the
    /// watcher then waits for it, presenting no card meanwhile. `pseudo` is this appliance's
    /// pseudo-token (see `crate::identity`).
    pub fn start(policy: &TokenPolicy, pseudo: String) -> Result<Self, CardError> {
        let watcher = match &policy.card_reader {
            Some(name) if policy.fixed.is_none() => Some(CardWatcher::start_waiting(
                (!name.is_empty()).then(|| name.clone()),
            )?),
            _ => None,
        };
        Ok(Self {
            card: watcher.as_ref().map(|w| w.subscribe()),
            prover: watcher.as_ref().map(|w| w.prover()),
            followed: watcher.as_ref().map(|w| w.followed()),
            _watcher: watcher,
            pseudo,
            require_card: policy.require_card,
            fixed: policy.fixed.clone(),
        })
    }

    /// The token to present now.
    pub fn current(&self) -> Option<String> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let card = self.card.as_ref().and_then(|c| c.borrow().clone());
        match card {
            Some(token) => Some(token),
            None if self.require_card => None,
            None => Some(self.pseudo.clone()),
        }
    }

    /// Who can prove `token` (the token now): the card reader when it is the card's token;
    /// `None` for pseudo-tokens and fixed tokens, which no card stands behind.
    pub fn prover_for(&self, token: &str) -> Option<CardProver> {
        let card = self.card.as_ref().and_then(|c| c.borrow().clone());
        (self.fixed.is_none() && card.as_deref() == Some(token))
            .then(|| self.prover.clone())
            .flatten()
    }

    /// The card reader the session's PC/SC may use (the token's); `None` without one.
    pub fn lent_reader(&self) -> Option<FollowedReader> {
        self.followed.clone()
    }

    /// Resolves when a card goes in or out; never when there is no reader to follow.
    pub async fn changed(&mut self) {
        match self.card.as_mut() {
            Some(card) => {
                if card.changed().await.is_err() {
                    // The watcher is gone: no more changes.
                    self.card = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}
