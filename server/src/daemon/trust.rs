//! How much an appliance's token is worth, and the `reattach` policy deciding from that whether
//! a session shown again on it is locked first.
//!
//! A token string alone proves nothing: `pseudo.<MAC>` is visible on the LAN and a card's ATR
//! and UID can be read by anyone holding the card for a second. A re-attached session is
//! shown straight away only to a card that proved possession of its key; every other re-attach
//! shows the session's lock screen first (under the default policy).

use serde::Deserialize;

/// What the token of an appliance has shown about itself (from its [`super::CardCheck`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenTrust {
    /// A pseudo-token (or no token): an appliance without a card; whoever sits at it has it.
    #[default]
    Pseudo,
    /// A card token whose card proved possession of the key recorded at enrolment.
    ProvenCard,
    /// A card token (ATR hash, UID) that proved nothing (yet): readable by anyone holding the card.
    UnprovenCard,
}

/// `reattach` in the config: what a user session shown again after it was detached (card out,
/// appliance gone, session moved) shows first. The attach right after a login in the greeter is
/// not a re-attach: its user just typed the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Reattach {
    /// `lock` for pseudo-tokens and unproven cards, `direct` for cards that proved their key.
    #[default]
    Auto,
    /// Always the desktop at once: whoever presents the token gets the session (trusted
    /// networks and kiosks, or cards you trust by their UID).
    Direct,
    /// Always the lock screen first, the user's password to get the desktop, as Sun Ray sites
    /// locked the screen on card removal.
    Lock,
}

impl Reattach {
    /// Whether a re-attached session is locked before its first frame on an appliance whose
    /// token is worth `trust`.
    pub fn locks(self, trust: TokenTrust) -> bool {
        match self {
            Reattach::Direct => false,
            Reattach::Lock => true,
            Reattach::Auto => trust != TokenTrust::ProvenCard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_pseudo_or_unproven_until_a_proof() {
        use super::super::CardCheck;
        assert_eq!(
            CardCheck::for_token(Some("pseudo.0123")).trust(),
            TokenTrust::Pseudo
        );
        assert_eq!(CardCheck::for_token(None).trust(), TokenTrust::Pseudo);
        assert_eq!(
            CardCheck::for_token(Some("atr3b8f.04a1b2c3")).trust(),
            TokenTrust::UnprovenCard
        );
        // A card token that happens to contain "pseudo" later on is still a card.
        assert_eq!(
            CardCheck::for_token(Some("card.pseudo.x")).trust(),
            TokenTrust::UnprovenCard
        );
        let proven = CardCheck::Proven { spki: vec![1] };
        assert_eq!(proven.trust(), TokenTrust::ProvenCard);
    }

    #[test]
    fn auto_locks_all_but_proven_cards() {
        use TokenTrust::*;
        assert!(Reattach::Auto.locks(Pseudo));
        assert!(Reattach::Auto.locks(UnprovenCard));
        assert!(!Reattach::Auto.locks(ProvenCard));
        for trust in [Pseudo, ProvenCard, UnprovenCard] {
            assert!(Reattach::Lock.locks(trust));
            assert!(!Reattach::Direct.locks(trust));
        }
        assert_eq!(Reattach::default(), Reattach::Auto);
    }

    #[test]
    fn the_policy_reads_from_toml() {
        #[derive(Deserialize)]
        struct C {
            reattach: Reattach,
        }
        let parse = |s: &str| toml::from_str::<C>(s).map(|c| c.reattach);
        assert_eq!(parse("reattach = \"direct\"").ok(), Some(Reattach::Direct));
        assert_eq!(parse("reattach = \"lock\"").ok(), Some(Reattach::Lock));
        assert_eq!(parse("reattach = \"auto\"").ok(), Some(Reattach::Auto));
        assert!(parse("reattach = \"sometimes\"").is_err());
    }
}
