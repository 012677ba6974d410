//! How an appliance's identity is written: the SHA-256 fingerprint of its certificate's public
//! key (SubjectPublicKeyInfo), as 64 lowercase hex digits, shown and typed short (its first 16
//! digits) in `wradm`, on the appliance's screen and in its pseudo-token `pseudo.<short id>`.
//!
//! The hashing happens where the certificate is (the appliance hashes its own key, the server the
//! key that signed the TLS handshake); this module only fixes the text, so both sides agree on it.

/// Hex digits of the short id: 64 bits, enough that two appliances of a site never share one
/// and no key can be ground to match a given one.
pub const SHORT_ID_LEN: usize = 16;

/// Prefix of pseudo-tokens, the token of an appliance with no card in it.
pub const PSEUDO_PREFIX: &str = "pseudo.";

/// The fingerprint of a SHA-256 digest of a SubjectPublicKeyInfo: 64 lowercase hex digits.
pub fn fingerprint_hex(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

/// The short id of a fingerprint (its first [`SHORT_ID_LEN`] hex digits).
pub fn short_id(fingerprint: &str) -> &str {
    fingerprint.get(..SHORT_ID_LEN).unwrap_or(fingerprint)
}

/// The pseudo-token of the appliance with this fingerprint: `pseudo.<short id>`.
pub fn pseudo_token(fingerprint: &str) -> String {
    format!("{PSEUDO_PREFIX}{}", short_id(fingerprint))
}

/// Whether `token` is a pseudo-token (any appliance's, not a card's).
pub fn is_pseudo_token(token: &str) -> bool {
    token.starts_with(PSEUDO_PREFIX)
}

/// Whether `text` can name an appliance: at least 8 hex digits, at most a whole fingerprint.
pub fn is_id_prefix(text: &str) -> bool {
    (8..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_short_id_and_pseudo_token() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[31] = 0x01;
        let fp = fingerprint_hex(&digest);
        assert_eq!(fp.len(), 64);
        assert!(fp.starts_with("ab00") && fp.ends_with("01"));
        assert_eq!(short_id(&fp), "ab00000000000000");
        assert_eq!(pseudo_token(&fp), "pseudo.ab00000000000000");
        assert!(is_pseudo_token(&pseudo_token(&fp)));
        assert!(!is_pseudo_token("card.3b8f:04a2"));
    }

    #[test]
    fn ids_are_hex_prefixes_of_eight_digits_or_more() {
        assert!(is_id_prefix("ab00000000000000"));
        assert!(is_id_prefix("AB000000"));
        assert!(!is_id_prefix("ab00000"));
        assert!(!is_id_prefix("zz000000"));
        assert!(!is_id_prefix(&"a".repeat(65)));
    }
}
