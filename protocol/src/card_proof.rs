//! What a smart card signs to prove it is the card its token names, and how that message is
//! built, so appliance and server agree byte for byte.
//!
//! The token (`atr….uid`) is what anyone holding the card for a second can read, so naming it
//! proves nothing. A PIV card (NIST SP 800-73-4) also holds a *card authentication* key in slot
//! 9E, usable without a PIN, and its certificate. The appliance asks the card to sign a
//! challenge with that key (GENERAL AUTHENTICATE) and sends the signature and the certificate in
//! [`crate::ClientControl::TokenProof`]; the server checks the signature against the public key
//! it recorded when the user first logged in with the card.
//!
//! The challenge needs no round trip: both ends derive it from the TLS connection's exporter
//! secret (RFC 8446 §7.5, [`EXPORTER_LABEL`], the token as context), which no other connection
//! shares, plus a counter the server accepts once per connection. A proof copied from one
//! connection is therefore worthless on any other, and cannot be replayed on its own.
//!
//! The card signs the SHA-256 digest of [`challenge_message`] with ECDSA P-256, which is exactly
//! an ECDSA-P256-SHA256 signature of the message, so the server verifies it with stock
//! primitives.

use serde::{Deserialize, Serialize};

/// TLS exporter label for the proof's connection secret.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-wayray-card-proof";
/// Bytes taken from the exporter.
pub const EXPORTER_LEN: usize = 32;
/// Domain separation: a signature made for WayRay means nothing anywhere else.
const CONTEXT: &[u8] = b"wayray card proof v1\0";

/// A card's answer to the challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardProof {
    /// The card's certificate for its card authentication key (PIV slot 9E), DER.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// ECDSA P-256 signature (ASN.1 DER) over [`challenge_message`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The message a card signs for `token`'s `counter`th proof on a connection whose exporter
/// secret (label [`EXPORTER_LABEL`], context = the token's bytes) is `exporter`.
pub fn challenge_message(exporter: &[u8], token: &str, counter: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + exporter.len() + token.len() + 8 + 4);
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(exporter);
    // Length-prefixed, so no token can end where another's counter begins.
    message.extend_from_slice(&(token.len() as u32).to_be_bytes());
    message.extend_from_slice(token.as_bytes());
    message.extend_from_slice(&counter.to_be_bytes());
    message
}

/// Whether a token names a smart card (as opposed to an appliance's pseudo-token), i.e. whether
/// a proof is expected for it.
pub fn is_card_token(token: &str) -> bool {
    !token.starts_with("pseudo.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_binds_connection_token_and_counter() {
        let base = challenge_message(&[1; 32], "atr1.04a1", 1);
        assert_ne!(base, challenge_message(&[2; 32], "atr1.04a1", 1));
        assert_ne!(base, challenge_message(&[1; 32], "atr1.04a2", 1));
        assert_ne!(base, challenge_message(&[1; 32], "atr1.04a1", 2));
        assert!(base.starts_with(CONTEXT));
        assert_eq!(base, challenge_message(&[1; 32], "atr1.04a1", 1));
    }

    #[test]
    fn pseudo_tokens_are_not_cards() {
        assert!(!is_card_token("pseudo.0123"));
        assert!(is_card_token("atr3b8f8001.04a1b2c3"));
    }
}
