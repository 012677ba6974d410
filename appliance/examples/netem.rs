//! `netem`: a counting relay for benchmarks and network tests, standing in for `tc netem` (which
//! these machines lack).
//!
//! **UDP mode** (default): listens on `--listen` (default `127.0.0.1:0`), forwards every datagram
//! to `--to HOST:PORT` from a socket of its own, and sends the replies back to whoever sent last
//! (one peer at a time: an appliance and its server). Each direction can be delayed
//! (`--delay-ms` ± `--jitter-ms`, uniform; jitter alone never reorders: a datagram does not
//! leave before the one ahead of it), thinned (`--loss PCT`) and reordered (`--reorder PCT`: that
//! share of datagrams is held back an extra `max(2 × jitter, 5)` ms, so later ones overtake it). The pseudo-random choices come from `--seed`, so two runs drop the same datagrams of the
//! same traffic.
//!
//! **Unix mode** (`--unix LISTEN_PATH --to TARGET_PATH`): a stream relay. Every connection accepted
//! on LISTEN_PATH is connected to TARGET_PATH and copied both ways unchanged (e.g. between
//! `waypipe server` and `waypipe client`).
//!
//! Either way it prints `NETEM_LISTEN=<address or path>` on stdout once it is ready, and counts
//! bytes and datagrams (or reads) in each direction: `up` is from the listening side (the
//! appliance, the waypipe server) to `--to`, `down` the other way. `--stats FILE` gets the counts as
//! JSON every `--stats-interval-ms` and on exit; SIGTERM or SIGINT also prints them on stdout
//! before exiting:
//!
//! ```json
//! {"mode":"udp","up":{"bytes":123,"datagrams":4,"dropped":0,"dropped_bytes":0},"down":{...}}
//! ```
//!
//! `bytes` counts what the sender put on the wire (before any loss); `dropped` what the relay then
//! discarded.
//!
//! ```sh
//! cargo build --release --example netem -p wayray-appliance
//! target/release/examples/netem --to 127.0.0.1:7390 --delay-ms 10 --jitter-ms 2 --loss 1 --reorder 1
//! target/release/examples/netem --unix /tmp/wp-relay.sock --to /tmp/wp-client.sock --stats stats.json
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use miette::{miette, IntoDiagnostic, Result, WrapErr};

/// A counting UDP (or Unix stream) relay with delay, jitter, loss and reordering.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Cli {
    /// UDP address to listen on (port 0: a free port).
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "unix")]
    listen: SocketAddr,
    /// Where to forward: HOST:PORT in UDP mode, a socket path with --unix.
    #[arg(long, value_name = "ADDR|PATH")]
    to: String,
    /// Relay a Unix stream socket instead: listen at this path (removed first if it exists).
    #[arg(long, value_name = "LISTEN_PATH")]
    unix: Option<PathBuf>,
    /// One-way delay added to each datagram, in milliseconds (both directions).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Uniform random variation of the delay, ± this many milliseconds.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Percentage of datagrams dropped (each direction, independently).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    loss: f64,
    /// Percentage of datagrams held back so that later ones overtake them.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    reorder: f64,
    /// Seed of the pseudo-random loss, jitter and reordering.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the counts as JSON to this file periodically and on exit (atomically: FILE.tmp, renamed).
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// How often --stats is rewritten.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    stats_interval_ms: u64,
}

/// Counts of one direction.
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    datagrams: AtomicU64,
    dropped: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl Counters {
    fn json(&self) -> String {
        format!(
            r#"{{"bytes":{},"datagrams":{},"dropped":{},"dropped_bytes":{}}}"#,
            self.bytes.load(Ordering::Relaxed),
            self.datagrams.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.dropped_bytes.load(Ordering::Relaxed)
        )
    }
}

struct Stats {
    mode: &'static str,
    up: Counters,
    down: Counters,
}

impl Stats {
    fn json(&self) -> String {
        format!(
            r#"{{"mode":"{}","up":{},"down":{}}}"#,
            self.mode,
            self.up.json(),
            self.down.json()
        )
    }

    fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.json() + "\n")?;
        std::fs::rename(&tmp, path)
    }
}

/// The impairments of one direction.
#[derive(Clone, Copy)]
struct Impairment {
    delay: f64,
    jitter: f64,
    loss: f64,
    reorder: f64,
}

impl Impairment {
    fn is_none(&self) -> bool {
        self.delay == 0.0 && self.jitter == 0.0 && self.loss == 0.0 && self.reorder == 0.0
    }

    /// When the next datagram, arriving now, leaves: `None` drops it. Jitter alone keeps the
    /// order (a datagram never leaves before the one ahead of it, as on a real path whose delay
    /// varies); only the `--reorder` share is held back so that later ones overtake it.
    fn schedule(&self, state: &mut Direction) -> Option<Instant> {
        if self.loss > 0.0 && state.rng.percent() < self.loss {
            return None;
        }
        let mut ms = self.delay;
        if self.jitter > 0.0 {
            ms += (state.rng.unit() * 2.0 - 1.0) * self.jitter;
        }
        let due = Instant::now() + Duration::from_secs_f64(ms.max(0.0) / 1000.0);
        if self.reorder > 0.0 && state.rng.percent() < self.reorder {
            let extra = (2.0 * self.jitter).max(5.0);
            return Some(due + Duration::from_secs_f64(extra / 1000.0));
        }
        let due = state.last_due.map_or(due, |last| due.max(last));
        state.last_due = Some(due);
        Some(due)
    }
}

/// The random source and the last departure time of one direction.
struct Direction {
    rng: SplitMix,
    last_due: Option<Instant>,
}

impl Direction {
    fn new(seed: u64) -> Self {
        Direction {
            rng: SplitMix(seed),
            last_due: None,
        }
    }
}

/// SplitMix64: small, deterministic, good enough for drop and delay decisions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, 100).
    fn percent(&mut self) -> f64 {
        self.unit() * 100.0
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    for (name, v) in [("--loss", cli.loss), ("--reorder", cli.reorder)] {
        if !(0.0..=100.0).contains(&v) {
            return Err(miette!("{name} must be a percentage (0–100), not {v}"));
        }
    }
    if cli.delay_ms < 0.0 || cli.jitter_ms < 0.0 {
        return Err(miette!("--delay-ms and --jitter-ms must not be negative"));
    }
    let impairment = Impairment {
        delay: cli.delay_ms,
        jitter: cli.jitter_ms,
        loss: cli.loss,
        reorder: cli.reorder,
    };
    let stats = Arc::new(Stats {
        mode: if cli.unix.is_some() { "unix" } else { "udp" },
        up: Counters::default(),
        down: Counters::default(),
    });
    match &cli.unix {
        Some(listen) => {
            if !impairment.is_none() {
                return Err(miette!(
                    "--delay-ms, --jitter-ms, --loss and --reorder apply to UDP only"
                ));
            }
            start_unix(listen, PathBuf::from(&cli.to), stats.clone())?;
        }
        None => {
            let to: SocketAddr = cli
                .to
                .parse()
                .into_diagnostic()
                .wrap_err_with(|| format!("--to {:?} is not an IP address and port", cli.to))?;
            start_udp(cli.listen, to, impairment, cli.seed, stats.clone())?;
        }
    }
    if let Some(path) = cli.stats.clone() {
        let stats = stats.clone();
        let every = Duration::from_millis(cli.stats_interval_ms.max(10));
        std::thread::spawn(move || loop {
            if let Err(e) = stats.write(&path) {
                eprintln!("netem: cannot write {}: {e}", path.display());
            }
            std::thread::sleep(every);
        });
    }
    wait_for_signal()?;
    if let Some(path) = &cli.stats {
        stats
            .write(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    println!("{}", stats.json());
    Ok(())
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_signal() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).into_diagnostic()?;
        let mut int = signal(SignalKind::interrupt()).into_diagnostic()?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}

/// A datagram waiting for its departure time; `seq` keeps equal times in arrival order.
type Pending = Reverse<(Instant, u64, Vec<u8>)>;

fn start_udp(
    listen: SocketAddr,
    to: SocketAddr,
    impairment: Impairment,
    seed: u64,
    stats: Arc<Stats>,
) -> Result<()> {
    let outer = UdpSocket::bind(listen)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {listen}"))?;
    let unspecified: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .into_diagnostic()?;
    let inner = UdpSocket::bind(unspecified).into_diagnostic()?;
    inner
        .connect(to)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot reach {to}"))?;
    let local = outer.local_addr().into_diagnostic()?;
    println!("NETEM_LISTEN={local}");
    let peer: Arc<Mutex<Option<SocketAddr>>> = Arc::default();

    // Appliance → server.
    let (up_tx, up_rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    {
        let outer = outer.try_clone().into_diagnostic()?;
        let peer = peer.clone();
        let stats = stats.clone();
        std::thread::spawn(move || {
            let mut state = Direction::new(seed);
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = match outer.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("netem: receive failed: {e}");
                        continue;
                    }
                };
                if let Ok(mut p) = peer.lock() {
                    *p = Some(from);
                }
                if !count(&stats.up, n, impairment.schedule(&mut state), &up_tx, &buf) {
                    return;
                }
            }
        });
    }
    {
        let inner = inner.try_clone().into_diagnostic()?;
        std::thread::spawn(move || send_loop(up_rx, |d| inner.send(d).map(drop)));
    }
    // Server → appliance.
    let (down_tx, down_rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    {
        let inner = inner.try_clone().into_diagnostic()?;
        let stats = stats.clone();
        std::thread::spawn(move || {
            let mut state = Direction::new(seed ^ 0xD1B5_4A32_D192_ED03);
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match inner.recv(&mut buf) {
                    Ok(n) => n,
                    // ICMP port unreachable while the server is not (yet, any more) there.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => {
                        eprintln!("netem: receive failed: {e}");
                        continue;
                    }
                };
                if !count(
                    &stats.down,
                    n,
                    impairment.schedule(&mut state),
                    &down_tx,
                    &buf,
                ) {
                    return;
                }
            }
        });
    }
    std::thread::spawn(move || {
        send_loop(down_rx, |d| {
            let to = peer.lock().ok().and_then(|p| *p);
            match to {
                Some(to) => outer.send_to(d, to).map(drop),
                None => Ok(()),
            }
        })
    });
    Ok(())
}

/// Counts a received datagram and queues it for time `due` (`None`: dropped); false once the
/// sending thread is gone.
fn count(
    counters: &Counters,
    n: usize,
    due: Option<Instant>,
    queue: &mpsc::Sender<(Instant, Vec<u8>)>,
    buf: &[u8],
) -> bool {
    counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    counters.datagrams.fetch_add(1, Ordering::Relaxed);
    match due {
        None => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            counters
                .dropped_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            true
        }
        Some(due) => queue.send((due, buf[..n].to_vec())).is_ok(),
    }
}

/// Sends queued datagrams at their departure times.
fn send_loop(queue: mpsc::Receiver<(Instant, Vec<u8>)>, send: impl Fn(&[u8]) -> io::Result<()>) {
    let mut heap: BinaryHeap<Pending> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while let Some(Reverse((due, _, _))) = heap.peek() {
            if *due > now {
                break;
            }
            if let Some(Reverse((_, _, datagram))) = heap.pop() {
                if let Err(e) = send(&datagram) {
                    // The other end not listening yet (or any more) is normal for UDP.
                    if e.kind() != io::ErrorKind::ConnectionRefused {
                        eprintln!("netem: send failed: {e}");
                    }
                }
            }
        }
        let next = match heap.peek() {
            Some(Reverse((due, _, _))) => queue.recv_timeout(due.saturating_duration_since(now)),
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((due, datagram)) => {
                heap.push(Reverse((due, seq, datagram)));
                seq += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn start_unix(listen: &Path, to: PathBuf, stats: Arc<Stats>) -> Result<()> {
    match std::fs::remove_file(listen) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot remove {}", listen.display()))
        }
    }
    let listener = UnixListener::bind(listen)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {}", listen.display()))?;
    println!("NETEM_LISTEN={}", listen.display());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("netem: accept failed: {e}");
                    continue;
                }
            };
            let target = match UnixStream::connect(&to) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("netem: cannot connect to {}: {e}", to.display());
                    continue;
                }
            };
            if let Err(e) = pipe_both(conn, target, stats.clone()) {
                eprintln!("netem: cannot relay a connection: {e}");
            }
        }
    });
    Ok(())
}

/// Copies `a` → `b` (counted as up) and `b` → `a` (down), each on its own thread.
fn pipe_both(a: UnixStream, b: UnixStream, stats: Arc<Stats>) -> io::Result<()> {
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let up = stats.clone();
    std::thread::spawn(move || copy_counted(a, b, &up.up));
    std::thread::spawn(move || copy_counted(b2, a2, &stats.down));
    Ok(())
}

fn copy_counted(mut from: UnixStream, mut to: UnixStream, counters: &Counters) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        counters.datagrams.fetch_add(1, Ordering::Relaxed);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
