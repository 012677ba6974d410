//! The PIV card commands the appliance uses to have a card prove it holds its key (NIST SP
//! 800-73-4, part 2): SELECT the PIV application, read the certificate of the card
//! authentication key (slot 9E, usable without a PIN, meant for exactly this: physical access),
//! and GENERAL AUTHENTICATE, which signs a digest with that key.
//!
//! Pure functions over a `transmit` closure (one APDU in, response data and status word out),
//! so the logic is tested against the virtual card without pcscd.

/// SELECT the PIV application by its AID without version (`A0 00 00 03 08 00 00 10 00`), as the
/// standard allows.
pub const SELECT_PIV: [u8; 15] = [
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];
/// GET DATA for the "X.509 Certificate for Card Authentication" object, tag `5F C1 01`.
pub const GET_CARD_AUTH_CERT: [u8; 11] = [
    0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x01, 0x00,
];
/// Algorithm reference of ECC P-256 in GENERAL AUTHENTICATE.
pub const ALG_ECC_P256: u8 = 0x11;
/// Key reference of the card authentication key.
pub const KEY_CARD_AUTH: u8 = 0x9E;

/// Sends one command APDU to the card and returns its answer (data and status word).
pub type Transmit<'a> = &'a mut dyn FnMut(&[u8]) -> Result<Vec<u8>, PivError>;

/// Why a card could not give a proof.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PivError {
    #[error("the card has no PIV application (SELECT answered {0:04X})")]
    NoApplication(u16),
    #[error("the card has no card authentication certificate (GET DATA answered {0:04X})")]
    NoCertificate(u16),
    #[error("the card authentication certificate is compressed, which is not supported")]
    CompressedCertificate,
    #[error("the card refused to sign (GENERAL AUTHENTICATE answered {0:04X})")]
    SignRefused(u16),
    #[error("the card's answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("talking to the card failed: {0}")]
    Transmit(String),
}

/// A response APDU: data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub status: u16,
}

impl Response {
    pub fn parse(raw: &[u8]) -> Result<Self, PivError> {
        match raw {
            [data @ .., sw1, sw2] => Ok(Self {
                data: data.to_vec(),
                status: u16::from_be_bytes([*sw1, *sw2]),
            }),
            _ => Err(PivError::Malformed(
                "a response shorter than its status word",
            )),
        }
    }

    pub fn ok(&self) -> bool {
        self.status == 0x9000
    }
}

/// Sends `apdu` and collects a long answer: `61 XX` means XX more bytes wait for GET RESPONSE,
/// `6C XX` means "ask again with Le = XX" (ISO 7816-4, 5.1.3).
pub fn transmit_all(transmit: Transmit<'_>, apdu: &[u8]) -> Result<Response, PivError> {
    let mut response = Response::parse(&transmit(apdu)?)?;
    if response.status >> 8 == 0x6C {
        let mut again = apdu.to_vec();
        if let Some(le) = again.last_mut() {
            *le = (response.status & 0xFF) as u8;
        }
        response = Response::parse(&transmit(&again)?)?;
    }
    let mut data = std::mem::take(&mut response.data);
    // Bounded: a card that keeps saying "more" cannot keep us here (64 KiB at most).
    for _ in 0..256 {
        if response.status >> 8 != 0x61 {
            break;
        }
        let get_response = [0x00, 0xC0, 0x00, 0x00, (response.status & 0xFF) as u8];
        response = Response::parse(&transmit(&get_response)?)?;
        data.append(&mut response.data);
    }
    Ok(Response {
        data,
        status: response.status,
    })
}

/// Selects the PIV application and reads the card authentication certificate (DER).
pub fn read_card_auth_certificate(transmit: Transmit<'_>) -> Result<Vec<u8>, PivError> {
    select(transmit)?;
    let response = transmit_all(transmit, &GET_CARD_AUTH_CERT)?;
    if !response.ok() {
        return Err(PivError::NoCertificate(response.status));
    }
    certificate_from_object(&response.data)
}

/// Selects the PIV application and has the card authentication key sign `digest` (a SHA-256
/// digest, 32 bytes); returns the ECDSA signature as the card gives it (ASN.1 DER).
pub fn sign_digest(transmit: Transmit<'_>, digest: &[u8; 32]) -> Result<Vec<u8>, PivError> {
    select(transmit)?;
    let response = transmit_all(transmit, &general_authenticate(digest))?;
    if !response.ok() {
        return Err(PivError::SignRefused(response.status));
    }
    signature_from_response(&response.data)
}

fn select(transmit: Transmit<'_>) -> Result<(), PivError> {
    let response = transmit_all(transmit, &SELECT_PIV)?;
    if response.ok() {
        Ok(())
    } else {
        Err(PivError::NoApplication(response.status))
    }
}

/// GENERAL AUTHENTICATE with the card authentication key: dynamic authentication template
/// `7C { 82 00 (response wanted), 81 20 <digest> (the challenge) }`, Le = 00.
pub fn general_authenticate(digest: &[u8; 32]) -> Vec<u8> {
    let mut template = vec![0x82, 0x00, 0x81, 32];
    template.extend_from_slice(digest);
    let mut data = vec![0x7C, template.len() as u8];
    data.extend_from_slice(&template);
    let mut apdu = vec![0x00, 0x87, ALG_ECC_P256, KEY_CARD_AUTH, data.len() as u8];
    apdu.extend_from_slice(&data);
    apdu.push(0x00);
    apdu
}

/// The certificate inside a PIV certificate object: `53 { 70 cert, 71 info, FE lrc }`.
pub fn certificate_from_object(object: &[u8]) -> Result<Vec<u8>, PivError> {
    let (tag, body, _) = tlv(object)?;
    if tag != 0x53 {
        return Err(PivError::Malformed("a certificate object without tag 53"));
    }
    let mut rest = body;
    let mut certificate = None;
    while !rest.is_empty() {
        let (tag, value, after) = tlv(rest)?;
        match tag {
            0x70 => certificate = Some(value.to_vec()),
            // CertInfo: bit 0 set means the certificate is gzip-compressed.
            0x71 if value.first().is_some_and(|info| info & 1 == 1) => {
                return Err(PivError::CompressedCertificate)
            }
            _ => {}
        }
        rest = after;
    }
    certificate
        .filter(|c| !c.is_empty())
        .ok_or(PivError::Malformed(
            "a certificate object without a certificate",
        ))
}

/// The signature in GENERAL AUTHENTICATE's answer: `7C { 82 signature }`.
pub fn signature_from_response(data: &[u8]) -> Result<Vec<u8>, PivError> {
    let (tag, body, _) = tlv(data)?;
    if tag != 0x7C {
        return Err(PivError::Malformed(
            "an authentication answer without tag 7C",
        ));
    }
    let (tag, signature, _) = tlv(body)?;
    if tag != 0x82 || signature.is_empty() {
        return Err(PivError::Malformed(
            "an authentication answer without a response",
        ));
    }
    Ok(signature.to_vec())
}

/// One BER-TLV with a one-byte tag: (tag, value, what follows).
pub fn tlv(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), PivError> {
    let short = PivError::Malformed("a TLV longer than its data");
    let (&tag, rest) = bytes
        .split_first()
        .ok_or(PivError::Malformed("an empty TLV"))?;
    let (&first, rest) = rest.split_first().ok_or(short.clone())?;
    let (len, rest) = match first {
        0..=0x7F => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first().ok_or(short.clone())?;
            (usize::from(len), rest)
        }
        0x82 => match rest {
            [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
            _ => return Err(short),
        },
        _ => return Err(PivError::Malformed("a TLV length of more than two bytes")),
    };
    if rest.len() < len {
        return Err(short);
    }
    let (value, after) = rest.split_at(len);
    Ok((tag, value, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_lengths() {
        assert_eq!(
            tlv(&[0x70, 2, 1, 2, 9]).unwrap(),
            (0x70, &[1, 2][..], &[9][..])
        );
        let long = [&[0x70, 0x81, 200][..], &[7; 200]].concat();
        assert_eq!(tlv(&long).unwrap().1.len(), 200);
        let longer = [&[0x70, 0x82, 0x01, 0x2C][..], &[7; 300]].concat();
        assert_eq!(tlv(&longer).unwrap().1.len(), 300);
        assert!(tlv(&[0x70, 3, 1]).is_err(), "short value");
        assert!(tlv(&[0x70, 0x83, 0, 0, 1]).is_err(), "three-byte length");
        assert!(tlv(&[0x70]).is_err());
        assert!(tlv(&[]).is_err());
    }

    #[test]
    fn certificate_object() {
        let object = [0x53, 10, 0x70, 3, 0x30, 1, 0, 0x71, 1, 0, 0xFE, 0];
        assert_eq!(certificate_from_object(&object).unwrap(), vec![0x30, 1, 0]);
        assert!(certificate_from_object(&object[..11]).is_err(), "truncated");
        let compressed = [0x53, 8, 0x70, 3, 0x30, 1, 0, 0x71, 1, 1];
        assert_eq!(
            certificate_from_object(&compressed),
            Err(PivError::CompressedCertificate)
        );
        assert!(certificate_from_object(&[0x53, 2, 0xFE, 0]).is_err());
    }

    #[test]
    fn long_answers_are_collected() {
        let mut calls = Vec::new();
        let mut card = |apdu: &[u8]| -> Result<Vec<u8>, PivError> {
            calls.push(apdu.to_vec());
            Ok(match apdu {
                [0x00, 0xC0, ..] if calls.len() == 2 => vec![4, 5, 6, 0x61, 0x01],
                [0x00, 0xC0, ..] => vec![7, 0x90, 0x00],
                _ => vec![1, 2, 3, 0x61, 0x03],
            })
        };
        let response = transmit_all(&mut card, &GET_CARD_AUTH_CERT).unwrap();
        assert_eq!(response.data, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(response.ok());
        assert_eq!(calls[1], vec![0x00, 0xC0, 0x00, 0x00, 0x03]);
    }

    #[test]
    fn general_authenticate_layout() {
        let apdu = general_authenticate(&[0xAB; 32]);
        assert_eq!(&apdu[..5], &[0x00, 0x87, 0x11, 0x9E, 38]);
        assert_eq!(&apdu[5..11], &[0x7C, 36, 0x82, 0x00, 0x81, 32]);
        assert_eq!(apdu.len(), 5 + 38 + 1);
        let answer = [0x7C, 5, 0x82, 3, 0x30, 1, 2];
        assert_eq!(signature_from_response(&answer).unwrap(), vec![0x30, 1, 2]);
    }

    #[test]
    fn no_application_is_an_error_not_a_proof() {
        let mut card = |_: &[u8]| -> Result<Vec<u8>, PivError> { Ok(vec![0x6A, 0x82]) };
        assert_eq!(
            read_card_auth_certificate(&mut card),
            Err(PivError::NoApplication(0x6A82))
        );
    }
}
