//! A server stand-in that takes a USB stick from a real appliance and reads it over USB/IP the
//! way Linux's `vhci-hcd` and `usb-storage` would, without a server kernel: the appliance side
//! of issue 21 tested end to end (scripts/test-qemu-usb boots the appliance image in QEMU with a
//! `usb-storage` stick and a `usb-kbd` against it).
//!
//!   usbip_peer --image stick.img [--megabytes N]
//!
//! Prints `LISTEN ADDR` once listening, then one line per check; exits non-zero on the first
//! failure. Checks: the stick is offered (and the keyboard never is) under the default filter;
//! GET_DESCRIPTOR, SET_CONFIGURATION; bulk-only-transport INQUIRY, READ CAPACITY and READ(10)
//! of the first N MiB, byte for byte against the image file (with the MB/s); an unlink of a
//! finished URB answered 0; a filter that denies mass storage ends the device's stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{RecvStream, SendStream};
use wayray_protocol::usb::usbip::{
    CmdSubmit, CmdUnlink, Command, Direction, Reply, ReplyDecoder, RetSubmit, RetUnlink,
    DEFAULT_MAX_TRANSFER,
};
use wayray_protocol::usb::{filter::DEFAULT, UsbDeviceOpen, UsbDeviceReply};
use wayray_protocol::{
    framing, ClientControl, Encoding, FrameReader, ServerControl, StreamKind, Welcome,
    DEFAULT_MAX_MESSAGE_LEN, PROTOCOL_VERSION,
};

type Result<T> = std::result::Result<T, String>;

/// The stand-in for vhci-hcd on one device stream.
struct Vhci {
    send: SendStream,
    recv: RecvStream,
    decoder: ReplyDecoder,
    devid: u32,
    seqnum: u32,
    done: HashMap<u32, RetSubmit>,
    unlinked: HashMap<u32, RetUnlink>,
}

impl Vhci {
    async fn submit(
        &mut self,
        ep: u32,
        direction: Direction,
        setup: [u8; 8],
        length: u32,
        data: Vec<u8>,
    ) -> Result<u32> {
        self.seqnum += 1;
        let command = Command::Submit(CmdSubmit {
            seqnum: self.seqnum,
            devid: self.devid,
            direction,
            ep,
            transfer_flags: if direction == Direction::In { 0x200 } else { 0 },
            transfer_buffer_length: length,
            start_frame: 0,
            number_of_packets: 0,
            interval: 0,
            setup,
            data,
            iso: Vec::new(),
        });
        self.send_command(command).await?;
        Ok(self.seqnum)
    }

    async fn send_command(&mut self, command: Command) -> Result<()> {
        self.decoder.sent(&command).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        command.encode(&mut bytes);
        self.send
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    async fn read_more(&mut self) -> Result<()> {
        let chunk =
            tokio::time::timeout(Duration::from_secs(30), self.recv.read_chunk(1 << 20, true))
                .await
                .map_err(|_| "no reply within 30 s".to_string())?
                .map_err(|e| format!("read: {e}"))?
                .ok_or("the appliance finished the device stream")?;
        self.decoder.push(&chunk.bytes);
        while let Some(reply) = self.decoder.next_reply().map_err(|e| e.to_string())? {
            match reply {
                Reply::Submit(r) => self.done.insert(r.seqnum, r).map(|_| ()),
                Reply::Unlink(r) => self.unlinked.insert(r.seqnum, r).map(|_| ()),
            };
        }
        Ok(())
    }

    async fn wait(&mut self, seqnum: u32) -> Result<RetSubmit> {
        loop {
            if let Some(r) = self.done.remove(&seqnum) {
                return Ok(r);
            }
            self.read_more().await?;
        }
    }

    async fn transfer(
        &mut self,
        ep: u32,
        direction: Direction,
        setup: [u8; 8],
        length: u32,
        data: Vec<u8>,
    ) -> Result<RetSubmit> {
        let seqnum = self.submit(ep, direction, setup, length, data).await?;
        self.wait(seqnum).await
    }

    async fn control_in(&mut self, setup: [u8; 8]) -> Result<Vec<u8>> {
        let length = u16::from_le_bytes([setup[6], setup[7]]) as u32;
        let r = self
            .transfer(0, Direction::In, setup, length, Vec::new())
            .await?;
        if r.status != 0 {
            return Err(format!("control IN {setup:02x?}: status {}", r.status));
        }
        Ok(r.data)
    }
}

/// A bulk-only-transport command (USB Mass Storage Class BOT 1.0): CBW out, data in, CSW in,
/// all three submitted at once (the IN endpoint's queue keeps them in order).
async fn bot_in(
    v: &mut Vhci,
    out_ep: u32,
    in_ep: u32,
    tag: u32,
    cdb: &[u8],
    length: u32,
) -> Result<Vec<u8>> {
    let mut cbw = Vec::with_capacity(31);
    cbw.extend_from_slice(b"USBC");
    cbw.extend_from_slice(&tag.to_le_bytes());
    cbw.extend_from_slice(&length.to_le_bytes());
    cbw.push(0x80);
    cbw.push(0);
    cbw.push(cdb.len() as u8);
    let mut cb = [0u8; 16];
    cb[..cdb.len()].copy_from_slice(cdb);
    cbw.extend_from_slice(&cb);
    let c = v.submit(out_ep, Direction::Out, [0; 8], 31, cbw).await?;
    let d = v
        .submit(in_ep, Direction::In, [0; 8], length, Vec::new())
        .await?;
    let s = v
        .submit(in_ep, Direction::In, [0; 8], 13, Vec::new())
        .await?;
    let cbw_done = v.wait(c).await?;
    if cbw_done.status != 0 {
        return Err(format!("CBW: status {}", cbw_done.status));
    }
    let data = v.wait(d).await?;
    let csw = v.wait(s).await?;
    if data.status != 0 || csw.status != 0 || csw.data.len() != 13 || &csw.data[..4] != b"USBS" {
        return Err(format!(
            "SCSI {:02x}: data status {}, CSW status {} {:02x?}",
            cdb[0], data.status, csw.status, csw.data
        ));
    }
    if u32::from_le_bytes([csw.data[4], csw.data[5], csw.data[6], csw.data[7]]) != tag
        || csw.data[12] != 0
    {
        return Err(format!("SCSI {:02x}: CSW {:02x?}", cdb[0], csw.data));
    }
    Ok(data.data)
}

async fn read_message<T: serde::de::DeserializeOwned>(recv: &mut RecvStream) -> Result<T> {
    let mut frames = FrameReader::new(1 << 16);
    loop {
        if let Some(m) = frames.next().map_err(|e| e.to_string())? {
            return Ok(m);
        }
        match recv
            .read_chunk(frames.wanted(), true)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(chunk) => frames.push(&chunk.bytes),
            None => return Err("stream ended".into()),
        }
    }
}

/// The next device stream the appliance opens: its `UsbDeviceOpen`.
async fn next_device(
    conn: &quinn::Connection,
    wait: Duration,
) -> Result<Option<(SendStream, RecvStream, UsbDeviceOpen)>> {
    let Ok(accepted) = tokio::time::timeout(wait, conn.accept_bi()).await else {
        return Ok(None);
    };
    let (send, mut recv) = accepted.map_err(|e| format!("accept a stream: {e}"))?;
    let mut tag = [0u8];
    recv.read_exact(&mut tag).await.map_err(|e| e.to_string())?;
    if tag[0] != StreamKind::Usb as u8 {
        return Err(format!("a bidirectional stream of kind {}", tag[0]));
    }
    let open: UsbDeviceOpen = read_message(&mut recv).await?;
    Ok(Some((send, recv, open)))
}

async fn run(image: &[u8], megabytes: usize) -> Result<()> {
    let endpoint = server_endpoint()?;
    println!(
        "LISTEN {}",
        endpoint.local_addr().map_err(|e| e.to_string())?
    );
    let incoming = tokio::time::timeout(Duration::from_secs(600), endpoint.accept())
        .await
        .map_err(|_| "no appliance within 600 s")?
        .ok_or("endpoint closed")?;
    let conn = incoming.await.map_err(|e| format!("handshake: {e}"))?;
    let (mut control, mut control_recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    match read_message::<ClientControl>(&mut control_recv).await? {
        ClientControl::Hello(_) => {}
        other => return Err(format!("expected Hello, got {other:?}")),
    }
    let send_control =
        |message: ServerControl| framing::encode(&message).map_err(|e| e.to_string());
    control
        .write_all(&send_control(ServerControl::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_name: "usbip-peer".into(),
            output_width: 640,
            output_height: 480,
            encoding: Encoding::TilesV1,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            audio: Default::default(),
            pool: Vec::new(),
        }))?)
        .await
        .map_err(|e| e.to_string())?;
    control
        .write_all(&send_control(ServerControl::UsbPolicy {
            filter: Some(DEFAULT.into()),
        })?)
        .await
        .map_err(|e| e.to_string())?;
    println!("ok: appliance connected, default filter {DEFAULT} sent");

    let (mut send, recv, open) = next_device(&conn, Duration::from_secs(60))
        .await?
        .ok_or("no device offered within 60 s")?;
    if open.interfaces.iter().any(|i| i.class == 3) {
        return Err(format!("a HID device was offered: {open:?}"));
    }
    if !open.interfaces.iter().any(|i| i.class == 8) {
        return Err(format!("not the stick: {open:?}"));
    }
    println!(
        "ok: the stick is offered: {} {:04x}:{:04x} speed {} {:?}",
        open.busid, open.vendor, open.product, open.speed, open.product_name
    );
    send.write_all(
        &framing::encode(&UsbDeviceReply::Attached { port: 1 }).map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut v = Vhci {
        send,
        recv,
        decoder: ReplyDecoder::new(DEFAULT_MAX_TRANSFER),
        devid: open.devid,
        seqnum: 0,
        done: HashMap::new(),
        unlinked: HashMap::new(),
    };

    // Enumeration as the server's kernel does it.
    let device = v.control_in([0x80, 0x06, 0x00, 0x01, 0, 0, 18, 0]).await?;
    let (vendor, product) = (
        u16::from_le_bytes([device[8], device[9]]),
        u16::from_le_bytes([device[10], device[11]]),
    );
    if device.len() != 18 || (vendor, product) != (open.vendor, open.product) {
        return Err(format!("device descriptor {device:02x?}"));
    }
    let head = v.control_in([0x80, 0x06, 0x00, 0x02, 0, 0, 9, 0]).await?;
    let total = u16::from_le_bytes([head[2], head[3]]);
    let config = v
        .control_in([
            0x80,
            0x06,
            0x00,
            0x02,
            0,
            0,
            total as u8,
            (total >> 8) as u8,
        ])
        .await?;
    let (mut bulk_in, mut bulk_out) = (None, None);
    let mut at = 0;
    while at + 2 <= config.len() && config[at] >= 2 {
        if config[at + 1] == 5 && config[at + 3] & 3 == 2 {
            let address = config[at + 2];
            if address & 0x80 != 0 {
                bulk_in = Some(u32::from(address & 0x0f));
            } else {
                bulk_out = Some(u32::from(address & 0x0f));
            }
        }
        at += config[at] as usize;
    }
    let (bulk_in, bulk_out) = (
        bulk_in.ok_or("no bulk IN endpoint")?,
        bulk_out.ok_or("no bulk OUT endpoint")?,
    );
    let set = v
        .transfer(
            0,
            Direction::Out,
            [0x00, 0x09, config[5], 0, 0, 0, 0, 0],
            0,
            Vec::new(),
        )
        .await?;
    if set.status != 0 {
        return Err(format!("SET_CONFIGURATION: status {}", set.status));
    }
    println!("ok: GET_DESCRIPTOR device/configuration, SET_CONFIGURATION {} (bulk in {bulk_in}, out {bulk_out})", config[5]);

    let inquiry = bot_in(&mut v, bulk_out, bulk_in, 1, &[0x12, 0, 0, 0, 36, 0], 36).await?;
    println!(
        "ok: INQUIRY: {:?}",
        String::from_utf8_lossy(&inquiry[8..36.min(inquiry.len())])
    );
    let capacity = bot_in(
        &mut v,
        bulk_out,
        bulk_in,
        2,
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        8,
    )
    .await?;
    let last = u32::from_be_bytes([capacity[0], capacity[1], capacity[2], capacity[3]]) as usize;
    let block = u32::from_be_bytes([capacity[4], capacity[5], capacity[6], capacity[7]]) as usize;
    if (last + 1) * block != image.len() {
        return Err(format!(
            "READ CAPACITY: {} blocks of {block}, the image has {} bytes",
            last + 1,
            image.len()
        ));
    }
    println!("ok: READ CAPACITY: {} blocks of {block} bytes", last + 1);

    // READ(10) of 240 blocks at a time (Linux usb-storage's max_sectors for USB 2).
    let want = (megabytes << 20).min(image.len());
    let per = 240usize;
    let started = Instant::now();
    let mut lba = 0usize;
    let mut tag = 3;
    while lba * block < want {
        let count = per.min(want / block - lba);
        let cdb = [
            0x28,
            0,
            (lba >> 24) as u8,
            (lba >> 16) as u8,
            (lba >> 8) as u8,
            lba as u8,
            0,
            (count >> 8) as u8,
            count as u8,
            0,
        ];
        let data = bot_in(&mut v, bulk_out, bulk_in, tag, &cdb, (count * block) as u32).await?;
        if data[..] != image[lba * block..(lba + count) * block] {
            return Err(format!(
                "READ(10) at block {lba}: the bytes differ from the image"
            ));
        }
        lba += count;
        tag += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ok: READ(10) of {} MiB equal to the image: {:.1} MB/s ({secs:.2} s)",
        want >> 20,
        want as f64 / secs / 1e6
    );

    // An unlink of an URB that already finished: answered 0 (after its RET_SUBMIT).
    let seqnum = v
        .submit(
            0,
            Direction::In,
            [0x80, 0x06, 0x00, 0x01, 0, 0, 18, 0],
            18,
            Vec::new(),
        )
        .await?;
    v.wait(seqnum).await?;
    v.seqnum += 1;
    let unlink = v.seqnum;
    v.send_command(Command::Unlink(CmdUnlink {
        seqnum: unlink,
        devid: v.devid,
        direction: Direction::Out,
        ep: 0,
        unlink_seqnum: seqnum,
    }))
    .await?;
    while !v.unlinked.contains_key(&unlink) {
        v.read_more().await?;
    }
    if v.unlinked[&unlink].status != 0 {
        return Err(format!(
            "RET_UNLINK of a finished URB: {:?}",
            v.unlinked[&unlink]
        ));
    }
    println!("ok: CMD_UNLINK of a finished URB answered 0");

    // A filter that denies mass storage: the appliance ends the stream and keeps the stick.
    control
        .write_all(&send_control(ServerControl::UsbPolicy {
            filter: Some("0x08,-1,-1,-1,0|-1,-1,-1,-1,1".into()),
        })?)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline.into(), v.recv.read_chunk(1 << 16, true)).await {
            Err(_) => return Err("the stream did not end within 20 s of a denying filter".into()),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(_))) => {}
            Ok(Err(e)) => return Err(format!("the stream broke instead of ending: {e}")),
        }
    }
    println!("ok: a filter denying class 0x08 ended the stick's stream");
    if let Some((_, _, open)) = next_device(&conn, Duration::from_secs(5)).await? {
        return Err(format!("offered after the filter denied it: {open:?}"));
    }
    println!("ok: nothing else offered (the keyboard stayed local)");
    Ok(())
}

/// A QUIC endpoint on a free loopback port with a fresh self-signed certificate (the appliance
/// pins it on first use).
fn server_endpoint() -> Result<quinn::Endpoint> {
    let identity = rcgen::generate_simple_self_signed(vec!["wayray-server".into()])
        .map_err(|e| e.to_string())?;
    let cert = rustls::pki_types::CertificateDer::from(identity.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(identity.signing_key.serialize_der().into());
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![wayray_protocol::ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    quinn::Endpoint::server(
        config,
        "127.0.0.1:0"
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?,
    )
    .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let Some(image) = arg("--image") else {
        eprintln!("usage: usbip_peer --image stick.img [--megabytes N]");
        std::process::exit(2);
    };
    let megabytes = arg("--megabytes")
        .and_then(|m| m.parse().ok())
        .unwrap_or(16);
    let image = match std::fs::read(image) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("usbip_peer: cannot read {image}: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&image, megabytes).await {
        println!("FAIL: {e}");
        std::process::exit(1);
    }
    println!("PASS");
}
