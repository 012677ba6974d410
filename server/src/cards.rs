//! Smart-card proofs on the server: checking that the card behind a card token holds a key
//! (see `wayray_protocol::card_proof` for what it signs and why no replay works), and what the
//! daemon makes of the outcome.

use rustls::pki_types::CertificateDer;
use wayray_protocol::card_proof::{challenge_message, CardProof};

/// What a [`ClientControl::TokenProof`](wayray_protocol::ClientControl::TokenProof) showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofOutcome {
    /// The card signed this connection's challenge with the key in its certificate; the key's
    /// SubjectPublicKeyInfo (DER), to compare with (or record as) the token's enrolled key.
    Proven { spki: Vec<u8> },
    /// The card cannot prove anything (no PIV application, no key): a memory card.
    NoProof,
    /// A proof was given and is wrong: a bad signature, a replayed or foreign challenge, a
    /// certificate that does not parse.
    Invalid(String),
}

/// Checks `proof` for `token`'s `counter`th proof on a connection whose exporter secret for
/// the token is `exporter`.
pub fn verify(exporter: &[u8], token: &str, counter: u64, proof: &CardProof) -> ProofOutcome {
    let certificate = CertificateDer::from(proof.certificate.as_slice());
    let cert = match webpki::EndEntityCert::try_from(&certificate) {
        Ok(cert) => cert,
        Err(error) => return ProofOutcome::Invalid(format!("the card's certificate: {error}")),
    };
    let message = challenge_message(exporter, token, counter);
    match cert.verify_signature(
        webpki::ring::ECDSA_P256_SHA256,
        &message,
        &proof.signature,
    ) {
        Ok(()) => ProofOutcome::Proven {
            spki: cert.subject_public_key_info().as_ref().to_vec(),
        },
        Err(error) => ProofOutcome::Invalid(format!(
            "the card's signature does not verify ({error}): not this connection's challenge, or not the certificate's key"
        )),
    }
}

/// Which cards may show sessions without proving their key (config `unproven_cards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnprovenCards {
    /// Only cards that prove their key (PIV) get sessions. A memory card gets a notice.
    #[default]
    Refuse,
    /// Memory cards are accepted, and every re-attach with one shows the lock screen first.
    Lock,
}

/// Short form of a key for logs and `wradm`: the first 8 bytes of its SHA-256, in hex.
pub fn key_fingerprint(spki: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key and a certificate for it, and a signature over a message made with ring
    /// (ECDSA-P256-SHA256: the same as a card signing the message's digest).
    fn signed(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["card".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der(), &rng)
                .unwrap();
        let signature = pair.sign(&rng, message).unwrap();
        (cert.der().to_vec(), signature.as_ref().to_vec())
    }

    #[test]
    fn a_signature_over_this_challenge_proves() {
        let message = challenge_message(&[5; 32], "atr1.01", 1);
        let (certificate, signature) = signed(&message);
        let proof = CardProof {
            certificate,
            signature,
        };
        let ProofOutcome::Proven { spki } = verify(&[5; 32], "atr1.01", 1, &proof) else {
            panic!("not proven");
        };
        assert!(!spki.is_empty());
        // Another connection, token or counter: the same bytes prove nothing.
        for (exporter, token, counter) in [
            ([6; 32], "atr1.01", 1),
            ([5; 32], "atr1.02", 1),
            ([5; 32], "atr1.01", 2),
        ] {
            assert!(matches!(
                verify(&exporter, token, counter, &proof),
                ProofOutcome::Invalid(_)
            ));
        }
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let proof = CardProof {
            certificate: vec![0x30, 0x03, 0x02, 0x01, 0x00],
            signature: vec![1, 2, 3],
        };
        assert!(matches!(
            verify(&[0; 32], "t", 1, &proof),
            ProofOutcome::Invalid(_)
        ));
    }
}
