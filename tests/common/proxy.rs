//! A loopback TCP proxy that injects network faults between clients and a server: it delays,
//! drops, truncates, duplicates, cuts and stalls the byte streams it forwards, while its
//! faults are switched on. Each connection (and each of its two directions) draws its faults
//! from a generator seeded by the proxy's seed and the connection's number, so a seed names
//! one schedule of decisions (where they land in the stream still depends on how the reads
//! happen to be split by timing).
//!
//! Faults act on bytes, below any framing: a duplicated or truncated chunk of a WebSocket
//! stream is corrupt framing, which either side must take as a broken connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// splitmix64: a small seeded generator (the tests take no `rand` dependency).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for one part of a run, independent of the others drawn from the same seed.
    pub fn derive(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in the range.
    pub fn between(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.below(range.end() - range.start() + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The kinds of fault the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A chunk is held back for a moment, then forwarded.
    Delay,
    /// The connection is shut down both ways, the chunk in hand not forwarded.
    Drop,
    /// Part of a chunk is forwarded, then the connection is cut.
    Truncate,
    /// A chunk is forwarded twice.
    Duplicate,
    /// The connection is cut once a byte budget drawn when it opened runs out.
    CutAfter,
    /// A direction stops forwarding for a while (longer than a delay: peers may time out).
    Stall,
}

impl Fault {
    pub const ALL: [Fault; 6] =
        [Fault::Delay, Fault::Drop, Fault::Truncate, Fault::Duplicate, Fault::CutAfter, Fault::Stall];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Delay => "delay",
            Fault::Drop => "drop",
            Fault::Truncate => "truncate",
            Fault::Duplicate => "duplicate",
            Fault::CutAfter => "cut-after",
            Fault::Stall => "stall",
        }
    }
}

/// How often each fault strikes while faults are on: per chunk forwarded (per mille), except
/// the byte budget, drawn once per connection and direction.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub delay_per_mille: u64,
    pub delay_ms: std::ops::RangeInclusive<u64>,
    pub stall_per_mille: u64,
    pub stall_ms: std::ops::RangeInclusive<u64>,
    pub drop_per_mille: u64,
    pub truncate_per_mille: u64,
    pub duplicate_per_mille: u64,
    /// The chance that a direction of a new connection gets a byte budget, and its bound.
    pub cut_after_per_mille: u64,
    pub cut_after_max_bytes: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            delay_per_mille: 80,
            delay_ms: 1..=50,
            stall_per_mille: 8,
            stall_ms: 100..=1_500,
            drop_per_mille: 8,
            truncate_per_mille: 8,
            duplicate_per_mille: 10,
            cut_after_per_mille: 250,
            cut_after_max_bytes: 6_000,
        }
    }
}

/// What the proxy did, by kind of fault.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub connections: AtomicU64,
    counts: [AtomicU64; 6],
}

impl FaultStats {
    fn record(&self, fault: Fault) {
        self.counts[Fault::ALL.iter().position(|f| *f == fault).expect("listed")].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self, fault: Fault) -> u64 {
        self.counts[Fault::ALL.iter().position(|f| *f == fault).expect("listed")].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        Fault::ALL.iter().map(|f| self.count(*f)).sum()
    }

    /// `delay=12 drop=3 ...`
    pub fn summary(&self) -> String {
        let counts: Vec<String> = Fault::ALL.iter().map(|f| format!("{}={}", f.name(), self.count(*f))).collect();
        counts.join(" ")
    }
}

struct Shared {
    upstream: SocketAddr,
    seed: u64,
    plan: FaultPlan,
    faults: AtomicBool,
    stop: AtomicBool,
    stats: FaultStats,
}

/// How often a blocked thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// A running proxy on 127.0.0.1; stops (and cuts every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`. Faults
    /// start switched off.
    pub fn start(upstream: SocketAddr, seed: u64, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            seed,
            plan,
            faults: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: FaultStats::default(),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new().name("fault-proxy".into()).spawn(move || accept(listener, shared))?
        };
        Ok(FaultProxy { addr, shared, acceptor: Some(acceptor) })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_faults(&self, on: bool) {
        self.shared.faults.store(on, Ordering::SeqCst);
    }

    pub fn faults(&self) -> bool {
        self.shared.faults.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> &FaultStats {
        &self.shared.stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    let mut number = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                number += 1;
                shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                match open(client, &shared, number) {
                    Ok(both) => pumps.extend(both),
                    Err(_) => continue, // The client sees its connection close.
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => std::thread::sleep(POLL),
        }
        pumps.retain(|pump| !pump.is_finished());
    }
    for pump in pumps {
        let _ = pump.join();
    }
}

/// Connects upstream and starts one pump per direction.
fn open(client: TcpStream, shared: &Arc<Shared>, number: u64) -> std::io::Result<[JoinHandle<()>; 2]> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2))?;
    for stream in [&client, &server] {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    }
    let spawn = |from: TcpStream, to: TcpStream, direction: u64| {
        let shared = shared.clone();
        let rng = Rng::derive(shared.seed, number * 2 + direction);
        let name = format!("fault-proxy-{number}-{}", if direction == 0 { "up" } else { "down" });
        std::thread::Builder::new().name(name).spawn(move || pump(from, to, rng, &shared))
    };
    let up = spawn(client.try_clone()?, server.try_clone()?, 0)?;
    let down = spawn(server, client, 1)?;
    Ok([up, down])
}

/// Shuts a connection down both ways, on both sides (the other pump's clones share the
/// sockets, so it stops too).
fn cut(from: &TcpStream, to: &TcpStream) {
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Sleeps, waking early if the proxy stops.
fn pause(shared: &Shared, ms: u64) {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while !shared.stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// Forwards `from` to `to` until either side ends, injecting faults while they are on.
fn pump(mut from: TcpStream, mut to: TcpStream, mut rng: Rng, shared: &Shared) {
    let plan = &shared.plan;
    let mut budget = rng.chance(plan.cut_after_per_mille).then(|| rng.below(plan.cut_after_max_bytes.max(1)));
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return cut(&from, &to);
        }
        let read = match from.read(&mut buffer) {
            Ok(0) => {
                // An orderly end: pass it on, and let the other direction finish.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(read) => read,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                continue;
            }
            Err(_) => return cut(&from, &to),
        };
        let chunk = &buffer[..read];
        let forward = |to: &mut TcpStream, bytes: &[u8]| to.write_all(bytes).and_then(|()| to.flush()).is_ok();
        if !shared.faults.load(Ordering::SeqCst) {
            if !forward(&mut to, chunk) {
                return cut(&from, &to);
            }
            continue;
        }
        if let Some(left) = budget.as_mut() {
            if (read as u64) >= *left {
                forward(&mut to, &chunk[..*left as usize]);
                shared.stats.record(Fault::CutAfter);
                return cut(&from, &to);
            }
            *left -= read as u64;
        }
        let roll = rng.below(1000);
        let mut threshold = 0;
        let mut strikes = |per_mille: u64| {
            threshold += per_mille;
            roll < threshold
        };
        let ok = if strikes(plan.drop_per_mille) {
            shared.stats.record(Fault::Drop);
            return cut(&from, &to);
        } else if strikes(plan.truncate_per_mille) {
            shared.stats.record(Fault::Truncate);
            let keep = rng.below(read as u64) as usize;
            forward(&mut to, &chunk[..keep]);
            return cut(&from, &to);
        } else if strikes(plan.duplicate_per_mille) {
            shared.stats.record(Fault::Duplicate);
            forward(&mut to, chunk) && forward(&mut to, chunk)
        } else if strikes(plan.stall_per_mille) {
            shared.stats.record(Fault::Stall);
            pause(shared, rng.between(plan.stall_ms.clone()));
            forward(&mut to, chunk)
        } else if strikes(plan.delay_per_mille) {
            shared.stats.record(Fault::Delay);
            pause(shared, rng.between(plan.delay_ms.clone()));
            forward(&mut to, chunk)
        } else {
            forward(&mut to, chunk)
        };
        if !ok {
            return cut(&from, &to);
        }
    }
}
