//! A card token is proven, not claimed: adversarial end-to-end tests with the real parts
//! (`wrsrvd --launcher`, `wrsessd` with PAM, `wrclient` following pcscd's vpcd reader, our
//! virtual PIV card) and hand-made QUIC clients playing the attacker.
//!
//! A user enrols their card by logging in with it. Then a client that names the card's token
//! without the card (no proof, a proof by another key, a proof copied from another connection,
//! a proof replayed on its own connection) gets a notice and not one frame of the session,
//! whether the server accepts unproven cards or not; a client holding the card's key gets the
//! session. Needs root (users, PAM, pcscd): `scripts/test` provides it.

mod support;

use std::{path::Path, time::Duration};

use support::launcher::*;
use support::*;
use wayray_protocol::{
    card_proof::{challenge_message, CardProof, EXPORTER_LABEL, EXPORTER_LEN},
    ClientControl, DisplayMessage, Notice, ServerControl,
};

/// A proof by the PIV key `pkcs8` (what the card would sign) for `token`'s `counter`th proof
/// on `conn`.
fn prove(conn: &quinn::Connection, pkcs8: &[u8], token: &str, counter: u64) -> CardProof {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let mut exporter = [0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, token.as_bytes())
        .expect("exporter");
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng).unwrap();
    let signature = key
        .sign(&rng, &challenge_message(&exporter, token, counter))
        .unwrap();
    let cert_key = rcgen::KeyPair::try_from(pkcs8).unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["forged".into()])
        .unwrap()
        .self_signed(&cert_key)
        .unwrap();
    CardProof {
        certificate: certificate.der().to_vec(),
        signature: signature.as_ref().to_vec(),
    }
}

/// A hand-made appliance naming `token`.
async fn claim(server: &Server, name: &str, token: &str) -> RawAppliance {
    RawAppliance::attach_with(server.listen, name, (800, 600), Some(token.to_owned())).await
}

/// Whether the server refused the card within a few seconds (a `CardRefused` notice).
async fn refused(raw: &mut RawAppliance) -> Option<String> {
    loop {
        match raw.next_control(Duration::from_secs(8)).await {
            Some(ServerControl::Notice(Notice::CardRefused { reason })) => return Some(reason),
            Some(_) => continue,
            None => return None,
        }
    }
}

/// Frames that reached `raw` within `wait`.
async fn frames(raw: &mut RawAppliance, wait: Duration) -> usize {
    raw.display_for(wait)
        .await
        .iter()
        .filter(|m| matches!(m, DisplayMessage::Frame(_)))
        .count()
}

fn write_config(path: &Path, unproven: &str) {
    std::fs::write(path, format!("unproven_cards = \"{unproven}\"\n")).unwrap();
}

#[test]
fn pcsc_a_token_is_proven_not_claimed() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let dir = TempDir::new("card-proof");
    let user = User::create(&format!("wrcp{}", std::process::id() % 100000), "s3cret-pw");
    user.session_toml("desktop = \"none\"\nautostart = [\"foot\"]\n");
    let run_dir = dir.path("wayray-run");
    let config = dir.path("wrsrvd.toml");
    write_config(&config, "refuse");
    let listen = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let args = [
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let start_server = || {
        Server::start(
            &dir,
            ServerOpts {
                launcher: true,
                listen: Some(listen),
                extra: &args,
                ..Default::default()
            },
        )
    };
    let server = start_server();
    let sessd_log = dir.path("wrsessd.log");
    let _sessd = start_wrsessd(&run_dir, &sessd_log);
    let logs = |server: &Server| {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- A\n{}\n--- B\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log")),
            read(&dir.path("b.log"))
        )
    };

    // Enrolment: the user logs in (PAM) with the PIV card at A; its key is recorded.
    let script = dir.path("a.script");
    std::fs::write(
        &script,
        format!(
            "wait 3000\ntype {}\nkey tab\ntype s3cret-pw\nkey enter\nwait 600000\n",
            user.0
        ),
    )
    .unwrap();
    let card = insert_card(&dir, PORT_A, "04C0DE01");
    let _a = appliance(&dir, "a", listen, READER_A, &script);
    wait_for(
        "the card to be enrolled at login",
        Duration::from_secs(40),
        || server.log().contains("card enrolled"),
        || logs(&server),
    );
    wait_for(
        "the user's session to show foot",
        Duration::from_secs(40),
        || session_logs(&run_dir).contains("mapping toplevel"),
        || logs(&server),
    );
    let session = wradm_sessions(&run_dir)
        .into_iter()
        .find(|s| s["kind"] == "user")
        .expect("a user session");
    let token = session["tokens"][0].as_str().expect("a token").to_owned();
    let key = std::fs::read(card_key(&dir, "04C0DE01")).expect("the card's key file");
    let foreign_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_der();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let attacks = |server: &Server| {
        runtime.block_on(async {
            // Naming the token, saying the card cannot prove anything.
            let mut raw = claim(server, "no-proof", &token).await;
            raw.send(&ClientControl::TokenProof {
                token: token.clone(),
                counter: 1,
                proof: None,
            })
            .await;
            let why = refused(&mut raw).await;
            assert!(
                why.is_some(),
                "no refusal without a proof\n{}",
                logs(server)
            );
            assert_eq!(frames(&mut raw, Duration::from_secs(2)).await, 0);

            // Naming it and never proving: nothing at all is shown.
            let mut silent = claim(server, "silent", &token).await;
            assert_eq!(
                frames(&mut silent, Duration::from_secs(3)).await,
                0,
                "frames before any proof\n{}",
                logs(server)
            );

            // A real proof, by another card's key (a clone of the ATR and UID).
            let mut clone = claim(server, "clone", &token).await;
            let proof = prove(&clone.conn, &foreign_key, &token, 1);
            clone
                .send(&ClientControl::TokenProof {
                    token: token.clone(),
                    counter: 1,
                    proof: Some(proof),
                })
                .await;
            let why = refused(&mut clone).await.expect("a clone is refused");
            assert!(why.contains("not the key"), "{why}");
            assert_eq!(frames(&mut clone, Duration::from_secs(2)).await, 0);
        })
    };
    attacks(&server);

    // The card's own key (as if it were in this reader) gets the session: the proof is what
    // counts. Its proof copied to another connection, or replayed on its own, gets nothing.
    runtime.block_on(async {
        let mut holder = claim(&server, "holder", &token).await;
        let proof = prove(&holder.conn, &key, &token, 1);
        holder
            .send(&ClientControl::TokenProof {
                token: token.clone(),
                counter: 1,
                proof: Some(proof.clone()),
            })
            .await;
        assert!(
            frames(&mut holder, Duration::from_secs(5)).await > 0,
            "the key's holder got no frame\n{}",
            logs(&server)
        );

        let mut replayer = claim(&server, "replayer", &token).await;
        replayer
            .send(&ClientControl::TokenProof {
                token: token.clone(),
                counter: 1,
                proof: Some(proof.clone()),
            })
            .await;
        let why = refused(&mut replayer)
            .await
            .expect("a proof from another connection is refused");
        assert!(why.contains("signature"), "{why}");
        assert_eq!(frames(&mut replayer, Duration::from_secs(2)).await, 0);

        // On its own connection: card out, card in, the same proof again.
        holder
            .send(&ClientControl::TokenChanged { token: None })
            .await;
        holder
            .send(&ClientControl::TokenChanged {
                token: Some(token.clone()),
            })
            .await;
        holder
            .send(&ClientControl::TokenProof {
                token: token.clone(),
                counter: 1,
                proof: Some(proof),
            })
            .await;
        let why = refused(&mut holder)
            .await
            .expect("a replayed counter is refused");
        assert!(why.contains("replay"), "{why}");
    });
    // The notices came first; the daemon's log lines may trail them a moment.
    wait_for(
        "the daemon to log the four refusals",
        Duration::from_secs(5),
        || server.log().matches("card refused").count() >= 4,
        || logs(&server),
    );

    // A memory card (no PIV key) under `unproven_cards = "refuse"`: a notice, no greeter.
    let script_b = dir.path("b.script");
    std::fs::write(&script_b, "wait 600000\n").unwrap();
    let _memory = insert_card_with(PORT_B, "0BADCAFE", None);
    let _b = appliance(&dir, "b", listen, READER_B, &script_b);
    wait_for(
        "appliance B to show the memory card's refusal",
        Duration::from_secs(30),
        || read(&dir.path("b.log")).contains("This card was refused"),
        || logs(&server),
    );
    let memory_greeter = |server: &Server| {
        server
            .log()
            .lines()
            .any(|l| l.contains("starting a greeter") && l.contains("0badcafe"))
    };
    assert!(
        !memory_greeter(&server),
        "a memory card got a greeter under refuse"
    );

    // Under `unproven_cards = "lock"` the memory card gets a greeter, and the enrolled card's
    // token still needs its key.
    drop(server);
    write_config(&config, "lock");
    let server = start_server();
    wait_for(
        "the memory card's greeter under the lock policy",
        Duration::from_secs(40),
        || {
            server
                .log()
                .contains("an unproven card, accepted with the lock screen")
        },
        || logs(&server),
    );
    // Its greeter, once wrsessd has found the new daemon too.
    wait_for(
        "the memory card's greeter",
        Duration::from_secs(30),
        || memory_greeter(&server),
        || logs(&server),
    );
    attacks(&server);
    // The real card at A still proves itself after the restart and gets its session back.
    wait_for(
        "A's card to prove its enrolled key to the new daemon",
        Duration::from_secs(40),
        || server.log().contains("card proved its enrolled key"),
        || logs(&server),
    );
    drop(card);
}
