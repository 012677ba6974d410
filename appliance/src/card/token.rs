//! A smart card's token, `<type>.<id>`, from what the card tells about itself: its ATR (answer to
//! reset) and, when it has one, its UID.
//!
//! The type is `atr` + the first 8 hex digits of the ATR's xxh3-64 hash: cards of one model share
//! an ATR, so the type names the model without spelling out 20-odd bytes. The id is the UID that
//! contactless readers return for GET DATA (PC/SC part 3, `FF CA 00 00 00`). A card without one
//! (most contact cards answer `6D 00`, "instruction not supported") is named by its whole ATR,
//! which is then all that tells it apart.

use xxhash_rust::xxh3::xxh3_64;

/// GET DATA, P1 = 00: "the card's UID", answered by the reader for contactless cards (PC/SC
/// part 3, section 3.2.2.1.3). `Le = 00`: as long as the UID is.
pub const GET_UID: [u8; 5] = [0xFF, 0xCA, 0x00, 0x00, 0x00];

/// The token of a card with this ATR and, if [`uid_from_response`] found one, this UID.
pub fn card_token(atr: &[u8], uid: Option<&[u8]>) -> String {
    let id = match uid {
        Some(uid) if !uid.is_empty() => hex(uid),
        _ => hex(atr),
    };
    format!("{}.{id}", card_type(atr))
}

/// `atr` + the first 8 hex digits (the high 32 bits) of the ATR's xxh3-64.
pub fn card_type(atr: &[u8]) -> String {
    format!("atr{:08x}", xxh3_64(atr) >> 32)
}

/// The UID in a response to [`GET_UID`]: the data before status word `90 00`, if there is any.
/// Any other status (`6D 00`, `6A 81`, …) means the card has no UID to give.
pub fn uid_from_response(response: &[u8]) -> Option<&[u8]> {
    match response {
        [uid @ .., 0x90, 0x00] if !uid.is_empty() => Some(uid),
        _ => None,
    }
}

/// The ATR without whatever follows it: its length is in its own bytes (ISO/IEC 7816-3, 8.2:
/// T0 and each TDi say which interface bytes follow, T0 how many historical bytes, and a check
/// byte TCK ends it unless only T=0 is offered). pcscd sometimes reports an ATR padded with zeros
/// to its 33-byte buffer (seen with vpcd when a card is swapped faster than pcscd polls), and a
/// token must not depend on that. An ATR too short for what it announces is kept as it is.
pub fn trim_atr(atr: &[u8]) -> &[u8] {
    match atr_len(atr) {
        Some(len) if len <= atr.len() => &atr[..len],
        _ => atr,
    }
}

fn atr_len(atr: &[u8]) -> Option<usize> {
    let t0 = *atr.get(1)?;
    let historical = usize::from(t0 & 0x0F);
    // Which of TA, TB, TC, TD (bits 0..3) follow; from T0 first, then from each TD.
    let mut present = t0 >> 4;
    let mut at = 2;
    let mut check_byte = false;
    loop {
        at += (present & 0b0111).count_ones() as usize;
        if present & 0b1000 == 0 {
            break;
        }
        let td = *atr.get(at)?;
        at += 1;
        // Any protocol but T=0 means a TCK at the end.
        check_byte |= td & 0x0F != 0;
        present = td >> 4;
    }
    Some(at + historical + usize::from(check_byte))
}

/// Lowercase hex, two digits a byte, no separators.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MIFARE Classic 1K behind a PC/SC part 3 contactless reader.
    const MIFARE_ATR: [u8; 20] = [
        0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x6A,
    ];

    #[test]
    fn type_is_atr_and_the_high_half_of_xxh3() {
        let expected = format!("atr{:016x}", xxh3_64(&MIFARE_ATR));
        assert_eq!(card_type(&MIFARE_ATR), expected[..11]);
        // Always 8 digits, leading zeros kept (about one in 16 of these hashes starts with 0).
        for byte in 0..=u8::MAX {
            let hash = format!("atr{:016x}", xxh3_64(&[byte]));
            assert_eq!(card_type(&[byte]), hash[..11]);
        }
    }

    #[test]
    fn id_is_the_uid_when_there_is_one() {
        let uid = [0x04, 0xA1, 0xB2, 0xC3];
        assert_eq!(
            card_token(&MIFARE_ATR, Some(&uid)),
            format!("{}.04a1b2c3", card_type(&MIFARE_ATR))
        );
    }

    #[test]
    fn id_is_the_atr_without_a_uid() {
        let atr = [0x3B, 0x02, 0x14, 0x50];
        let expected = format!("{}.3b021450", card_type(&atr));
        assert_eq!(card_token(&atr, None), expected);
        assert_eq!(
            card_token(&atr, Some(&[])),
            expected,
            "an empty UID is none"
        );
    }

    #[test]
    fn uid_only_with_status_9000_and_data() {
        assert_eq!(
            uid_from_response(&[0x04, 0xA1, 0x90, 0x00]),
            Some(&[0x04, 0xA1][..])
        );
        assert_eq!(uid_from_response(&[0x90, 0x00]), None, "no data");
        assert_eq!(uid_from_response(&[0x6D, 0x00]), None, "not supported");
        assert_eq!(uid_from_response(&[0x04, 0xA1, 0x6A, 0x81]), None);
        assert_eq!(uid_from_response(&[0x00]), None, "too short for a status");
        assert_eq!(uid_from_response(&[]), None);
    }

    #[test]
    fn atr_length_is_its_own() {
        let mut padded = MIFARE_ATR.to_vec();
        padded.resize(33, 0);
        assert_eq!(trim_atr(&padded), MIFARE_ATR, "T=0 and T=1, TCK");
        assert_eq!(trim_atr(&MIFARE_ATR), MIFARE_ATR);
        // T=0 only: no TCK.
        assert_eq!(
            trim_atr(&[0x3B, 0x02, 0x14, 0x50, 0x00, 0x00]),
            [0x3B, 0x02, 0x14, 0x50]
        );
        // TA1 TB1 TC1 TD1 (T=1), TD2 (T=1) with TA3 TB3, 8 historical bytes, TCK.
        let yubikey = [
            0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x59, 0x75, 0x62, 0x69, 0x6B,
            0x65, 0x79, 0x34, 0xD4,
        ];
        assert_eq!(trim_atr(&[&yubikey[..], &[0; 15]].concat()), yubikey);
        // Too short for what it announces, or no T0: kept whole.
        assert_eq!(trim_atr(&MIFARE_ATR[..10]), &MIFARE_ATR[..10]);
        assert_eq!(trim_atr(&[0x3B, 0x80]), [0x3B, 0x80]);
        assert_eq!(trim_atr(&[0x3B]), [0x3B]);
        assert_eq!(trim_atr(&[]), [0u8; 0]);
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0F, 0xAB, 0xFF]), "000fabff");
        assert_eq!(hex(&[]), "");
    }
}
