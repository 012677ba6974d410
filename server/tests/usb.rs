//! USB forwarding on a server without `vhci-hcd` (this host's kernel has no modules; the
//! forwarding itself is tested with a real vhci-hcd in QEMU, scripts/test-qemu-vhci): the
//! server says once that forwarding is off, tells the appliance to keep its devices
//! (`UsbPolicy { filter: None }` right after Welcome), answers a device stream that comes
//! anyway with `Refused` naming why, records the refusal in the audit log, and a malformed
//! device stream costs nothing but itself.

mod support;

use std::time::Duration;

use support::*;
use wayray_protocol::{
    framing,
    usb::{UsbDeviceOpen, UsbDeviceReply, UsbInterfaceClass},
    FrameReader, ServerControl, StreamKind,
};

fn stick() -> UsbDeviceOpen {
    UsbDeviceOpen {
        busid: "1-2".into(),
        devid: (1 << 16) | 3,
        speed: 3,
        vendor: 0x46f4,
        product: 0x0001,
        version: 0x0100,
        class: 0,
        subclass: 0,
        protocol: 0,
        interfaces: vec![UsbInterfaceClass {
            class: 8,
            subclass: 6,
            protocol: 0x50,
        }],
        manufacturer: Some("QEMU".into()),
        product_name: Some("QEMU USB HARDDRIVE".into()),
        serial: None,
    }
}

/// Opens a device stream, sends `body` after the tag, and reads the server's reply.
async fn offer(conn: &quinn::Connection, body: &[u8]) -> Result<UsbDeviceReply, String> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[StreamKind::Usb as u8]).await.unwrap();
    send.write_all(body).await.unwrap();
    let mut reader = FrameReader::new(1 << 16);
    loop {
        if let Some(reply) = reader.next::<UsbDeviceReply>().unwrap() {
            // Nothing follows a refusal: the server finishes the stream.
            let rest = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1024))
                .await
                .expect("the server finishes a refused device's stream");
            assert_eq!(rest.map_err(|e| e.to_string())?, Vec::<u8>::new());
            return Ok(reply);
        }
        match tokio::time::timeout(Duration::from_secs(10), recv.read_chunk(1024, true)).await {
            Ok(Ok(Some(chunk))) => reader.push(&chunk.bytes),
            Ok(Ok(None)) => return Err("finished without a reply".into()),
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err("no reply within 10 s".into()),
        }
    }
}

fn usb_audit(server: &Server) -> Vec<String> {
    let db = server.dir.join("server-state").join("sessions.db");
    let conn = rusqlite::Connection::open(db).expect("open the store");
    let mut stmt = conn
        .prepare(
            "SELECT event || ' | ' || COALESCE(appliance, '') || ' | ' || COALESCE(detail, '') \
             FROM audit WHERE event LIKE 'usb_%' ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn without_vhci_hcd_devices_stay_on_the_appliance_and_refusals_are_audited() {
    let dir = TempDir::new("usb-off");
    let server = Server::start(&dir, ServerOpts::default());
    let mut appliance = RawAppliance::attach(server.listen, "usb-test").await;

    // Right after Welcome: take nothing. No other policy follows once the session is shown.
    match appliance.next_control(Duration::from_secs(10)).await {
        Some(ServerControl::UsbPolicy { filter: None }) => {}
        other => panic!("expected UsbPolicy {{ filter: None }} after Welcome, got {other:?}"),
    }
    server.wait_log("attached", 1, Duration::from_secs(30));
    while let Some(msg) = appliance.next_control(Duration::from_secs(1)).await {
        assert!(
            !matches!(msg, ServerControl::UsbPolicy { .. }),
            "a policy without vhci-hcd: {msg:?}"
        );
    }

    // A device offered anyway is refused, with the reason.
    let open = framing::encode(&stick()).unwrap();
    match offer(&appliance.conn, &open).await.unwrap() {
        UsbDeviceReply::Refused { reason } => {
            assert!(reason.contains("USB forwarding is off"), "{reason}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }

    // A malformed description: that stream is reset, the connection and the next offer go on.
    let (mut bad_send, mut bad_recv) = appliance.conn.open_bi().await.unwrap();
    bad_send.write_all(&[StreamKind::Usb as u8]).await.unwrap();
    bad_send
        .write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let _ = bad_send.finish();
    let bad = tokio::time::timeout(Duration::from_secs(10), bad_recv.read_to_end(1024))
        .await
        .expect("the server ends a malformed device stream");
    assert!(
        bad.is_err(),
        "a malformed device stream got an answer: {bad:?}"
    );
    assert!(matches!(
        offer(&appliance.conn, &open).await.unwrap(),
        UsbDeviceReply::Refused { .. }
    ));
    assert!(appliance.conn.close_reason().is_none());

    let audit = usb_audit(&server);
    assert_eq!(audit.len(), 2, "{audit:#?}");
    for entry in &audit {
        assert!(entry.starts_with("usb_refused | "), "{entry}");
        assert!(entry.contains("usb-test"), "names the appliance: {entry}");
        assert!(
            entry.contains(
                "1-2 46f4:0001 \"QEMU\" \"QEMU USB HARDDRIVE\" class 00 interfaces 08/06/50"
            ),
            "names the device: {entry}"
        );
        assert!(entry.contains("USB forwarding is off"), "says why: {entry}");
    }
    // Said once, at start-up.
    let log = server.log();
    assert_eq!(
        log.matches("USB forwarding is off: appliances keep their USB devices")
            .count(),
        1,
        "{log}"
    );
}

/// A `[usb] shared_user` that is no account here stops the daemon at start-up with a message
/// naming it, instead of every appliance silently keeping its devices.
#[test]
fn an_unknown_shared_user_stops_the_daemon_with_its_name() {
    let dir = TempDir::new("usb-shared-user");
    let config = dir.path("wrsrvd.toml");
    std::fs::write(&config, "[usb]\nshared_user = \"no-such-wayray-user\"\n").unwrap();
    let out = std::process::Command::new(wrsrvd())
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--api-listen", "off"])
        .arg("--state-dir")
        .arg(dir.path("state"))
        .env("XDG_RUNTIME_DIR", dir.path("run"))
        .output()
        .unwrap();
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "wrsrvd started anyway:\n{stderr}");
    assert!(
        stderr.contains("shared_user = \"no-such-wayray-user\" is not an account"),
        "{stderr}"
    );
}
