//! Card proofs, both ends: the appliance parsing what a card answers (PIV certificate object,
//! GENERAL AUTHENTICATE response, status words; `appliance/src/card/piv.rs`) and the server
//! checking a `TokenProof` from the control stream (certificate parse and ECDSA verification;
//! `server/src/cards.rs`). Both files are compiled in as they are.
#![no_main]

#[path = "../../../appliance/src/card/piv.rs"]
#[allow(dead_code)]
mod piv;
#[path = "../../../server/src/cards.rs"]
#[allow(dead_code)]
mod cards;

use libfuzzer_sys::fuzz_target;
use wayray_protocol::{card_proof::CardProof, ClientControl};

fuzz_target!(|data: &[u8]| {
    let _ = piv::Response::parse(data);
    let _ = piv::certificate_from_object(data);
    let _ = piv::signature_from_response(data);
    // A card that answers with these bytes, again and again (GET RESPONSE chains included).
    let mut calls = 0;
    let mut card = |_: &[u8]| -> Result<Vec<u8>, piv::PivError> {
        calls += 1;
        if calls > 300 {
            return Err(piv::PivError::Transmit("enough".into()));
        }
        Ok(data.to_vec())
    };
    let _ = piv::read_card_auth_certificate(&mut card);
    // The server's side: a TokenProof as it arrives on the control stream.
    if let Ok(ClientControl::TokenProof {
        token,
        counter,
        proof: Some(proof),
    }) = postcard::from_bytes::<ClientControl>(data)
    {
        let _ = cards::verify(&[7; 32], &token, counter, &proof);
    }
    // And any bytes as a certificate and a signature.
    let (certificate, signature) = data.split_at(data.len() / 2);
    let proof = CardProof {
        certificate: certificate.to_vec(),
        signature: signature.to_vec(),
    };
    let _ = cards::verify(&[0; 32], "atr00000000.00", 1, &proof);
});
