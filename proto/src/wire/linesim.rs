//! A simulated line for tests and benchmarks: byte rate (8N1: 10 bits a byte), latency,
//! and faults per direction (bit errors, dropped bytes, duplicated chunks, noise bursts,
//! silences, console text), all driven by a seeded RNG.
//!
//! [`simulate`] runs a [`Sender`] against a [`Receiver`] on a simulated clock (fast and
//! deterministic); [`pipe`] gives a real-time [`Transport`] pair for the threaded uplink.

use super::receiver::{Receiver, ReceiverConfig, RxEvent};
use super::sender::{Sender, SenderStats};
use super::{frame::RejectReason, Priority, StreamId, Transport};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: tiny, seedable, good enough for fault injection.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    /// Trials until the next success of probability `p` (geometric), `u64::MAX` if p = 0.
    fn gap(&mut self, p: f64) -> u64 {
        if p <= 0.0 {
            return u64::MAX;
        }
        let u = self.unit().max(1e-300);
        (u.ln() / (1.0 - p.min(0.999_999)).ln()) as u64
    }
}

/// Faults of one direction of the line.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability that a bit is flipped.
    pub ber: f64,
    /// Probability that a byte is lost.
    pub drop_byte: f64,
    /// Probability that a written chunk arrives twice.
    pub dup_chunk: f64,
    /// Probability that a written chunk is hit by a burst of `burst_len` random bytes.
    pub burst: f64,
    pub burst_len: usize,
    /// Probability that a kernel console line is written before a chunk.
    pub console_text: f64,
    /// `[start, end)` in seconds: whatever is sent meanwhile is lost.
    pub silences: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct LineConfig {
    /// Bytes per second (a serial line: baud / 10); 0 = unlimited.
    pub rate: u64,
    pub latency: Duration,
    /// Agent → host.
    pub up: Faults,
    /// Host → agent.
    pub down: Faults,
    /// Whether the host's acks reach the agent.
    pub two_way: bool,
    pub seed: u64,
    /// Seconds at which the link breaks: bytes in flight are lost, the agent reconnects.
    pub disconnects: Vec<f64>,
    /// Seconds at which the host restarts from a snapshot (and its files).
    pub host_restarts: Vec<f64>,
    /// Give up after this many simulated seconds.
    pub time_limit: f64,
}

impl LineConfig {
    /// A clean serial line at `baud`, 8N1, both directions.
    pub fn serial(baud: u64) -> LineConfig {
        LineConfig {
            rate: baud / 10,
            latency: Duration::from_micros(100),
            up: Faults::default(),
            down: Faults::default(),
            two_way: true,
            seed: 1,
            disconnects: vec![],
            host_restarts: vec![],
            time_limit: 3600.0,
        }
    }
    /// The same bit error rate both ways.
    pub fn with_ber(mut self, ber: f64) -> LineConfig {
        self.up.ber = ber;
        self.down.ber = ber;
        self
    }
}

/// One direction: applies faults to chunks written into it.
struct Wire {
    faults: Faults,
    rng: Rng,
    bits_to_flip: u64,
    bytes_to_drop: u64,
}

impl Wire {
    fn new(faults: Faults, seed: u64) -> Wire {
        let mut rng = Rng::new(seed);
        let bits_to_flip = rng.gap(faults.ber);
        let bytes_to_drop = rng.gap(faults.drop_byte);
        Wire { faults, rng, bits_to_flip, bytes_to_drop }
    }

    /// What arrives of `chunk` sent at time `t`; console text inserted is also appended
    /// to `console`. Several chunks when duplicated.
    fn transmit(&mut self, chunk: &[u8], t: f64, console: &mut Vec<u8>) -> Vec<Vec<u8>> {
        if self.faults.silences.iter().any(|&(a, b)| a <= t && t < b) {
            return vec![];
        }
        let mut out = Vec::with_capacity(chunk.len() + 64);
        if self.rng.unit() < self.faults.console_text {
            let line = format!("[{t:12.6}] console line {}\r\n", self.rng.next_u64() % 1000);
            console.extend_from_slice(line.as_bytes());
            out.extend_from_slice(line.as_bytes());
        }
        let start = out.len();
        for &b in chunk {
            if self.bytes_to_drop == 0 {
                self.bytes_to_drop = self.rng.gap(self.faults.drop_byte);
                continue;
            }
            self.bytes_to_drop = self.bytes_to_drop.saturating_sub(1);
            out.push(b);
        }
        let bits = 8 * (out.len() - start) as u64;
        let mut pos = 0u64;
        while self.bits_to_flip < bits - pos {
            pos += self.bits_to_flip;
            out[start + (pos / 8) as usize] ^= 1 << (pos % 8);
            pos += 1;
            self.bits_to_flip = self.rng.gap(self.faults.ber);
            if pos >= bits {
                break;
            }
        }
        self.bits_to_flip = self.bits_to_flip.saturating_sub(bits - pos.min(bits));
        if out.len() > start && self.rng.unit() < self.faults.burst {
            let at = start + self.rng.below(out.len() - start);
            let noise = self.rng.bytes(self.faults.burst_len);
            let end = (at + noise.len()).min(out.len());
            out[at..end].copy_from_slice(&noise[..end - at]);
        }
        if self.rng.unit() < self.faults.dup_chunk {
            vec![out.clone(), out]
        } else {
            vec![out]
        }
    }
}

/// What one simulated transfer produced.
#[derive(Clone, Debug, Default)]
pub struct SimResult {
    /// Bytes delivered per stream, in order.
    pub streams: BTreeMap<StreamId, Vec<u8>>,
    /// Stream ends: (length, verified).
    pub ends: BTreeMap<StreamId, (u64, bool)>,
    /// Data events whose offset was not the delivered length (must stay 0).
    pub order_violations: u64,
    pub text: Vec<u8>,
    /// Console text the line inserted (agent → host).
    pub text_injected: Vec<u8>,
    pub hellos: Vec<Vec<u8>>,
    pub new_sessions: u32,
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Simulated seconds until every stream ended at the host (or the limit).
    pub elapsed: f64,
    /// Whether every workload stream ended, verified, and the sender was done.
    pub complete: bool,
    /// Workload bytes / (elapsed x line rate), in percent.
    pub goodput_pct: f64,
    pub sender: SenderStats,
    pub acks_sent: u64,
}

/// Streams to send: id, priority, content.
pub type Workload = Vec<(StreamId, Priority, Vec<u8>)>;

#[derive(Default)]
struct Direction {
    busy_until: f64,
    arrivals: VecDeque<(f64, Vec<u8>)>,
}

/// Send `workload` from `sender` to `receiver` over a simulated line; deterministic for a
/// given seed. Runs until the sender is done, or `line.time_limit`.
pub fn simulate(
    sender: &mut Sender,
    receiver: &mut Receiver,
    workload: &Workload,
    line: &LineConfig,
) -> SimResult {
    let base = Instant::now();
    let at = |t: f64| base + Duration::from_secs_f64(t);
    let secs = |i: Instant| i.saturating_duration_since(base).as_secs_f64();
    let mut r = SimResult::default();
    let mut up_wire = Wire::new(line.up.clone(), line.seed);
    let mut down_wire = Wire::new(line.down.clone(), line.seed ^ 0xD0E);
    let (mut up, mut down) = (Direction::default(), Direction::default());
    let mut written: Vec<usize> = vec![0; workload.len()];
    let mut closed = vec![false; workload.len()];
    for (id, prio, _) in workload {
        sender.open(*id, *prio);
    }
    let mut disconnects = line.disconnects.clone();
    let mut restarts = line.host_restarts.clone();
    let latency = line.latency.as_secs_f64();
    let tx_time = |n: usize| if line.rate == 0 { 0.0 } else { n as f64 / line.rate as f64 };
    let mut dummy = Vec::new();
    let mut t = 0.0;
    let mut all_ended_at = None;
    loop {
        let now = at(t);
        let mut progress = false;
        for (i, (id, _, data)) in workload.iter().enumerate() {
            while written[i] < data.len() && sender.can_accept(*id) {
                match sender.write(*id, &data[written[i]..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => written[i] += n,
                }
            }
            if written[i] == data.len() && !closed[i] {
                closed[i] = sender.close(*id).is_ok();
            }
        }
        if disconnects.first().is_some_and(|&d| d <= t) {
            disconnects.remove(0);
            up = Direction { busy_until: t, ..Direction::default() };
            down = Direction { busy_until: t, ..Direction::default() };
            sender.reset_link();
            receiver.reset_link();
        }
        if restarts.first().is_some_and(|&d| d <= t) {
            restarts.remove(0);
            let snap = receiver.snapshot();
            let files = r.streams.clone();
            let prefix = |s: StreamId| -> io::Result<Box<dyn io::Read>> {
                Ok(Box::new(io::Cursor::new(files.get(&s).cloned().unwrap_or_default())))
            };
            if let Ok(restored) =
                Receiver::restore(receiver.key().clone(), ReceiverConfig::default(), &snap, prefix)
            {
                *receiver = restored;
            }
        }
        if up.busy_until <= t {
            if let Some(bytes) = sender.poll_transmit(now) {
                up.busy_until = t + tx_time(bytes.len());
                for chunk in up_wire.transmit(&bytes, t, &mut r.text_injected) {
                    up.arrivals.push_back((up.busy_until + latency, chunk));
                }
                progress = true;
            }
        }
        if down.busy_until <= t {
            if let Some(bytes) = receiver.poll_transmit(now) {
                if line.two_way {
                    down.busy_until = t + tx_time(bytes.len());
                    for chunk in down_wire.transmit(&bytes, t, &mut dummy) {
                        down.arrivals.push_back((down.busy_until + latency, chunk));
                    }
                }
                progress = true;
            }
        }
        while up.arrivals.front().is_some_and(|a| a.0 <= t) {
            let Some((_, chunk)) = up.arrivals.pop_front() else { break };
            for ev in receiver.handle_input(&chunk, now) {
                record(&mut r, ev);
            }
            progress = true;
        }
        while down.arrivals.front().is_some_and(|a| a.0 <= t) {
            let Some((_, chunk)) = down.arrivals.pop_front() else { break };
            sender.handle_input(&chunk, now);
            progress = true;
        }
        let all_ended = workload.iter().all(|(id, _, _)| r.ends.contains_key(id));
        if all_ended && all_ended_at.is_none() {
            all_ended_at = Some(t);
        }
        if (sender.is_done() && all_ended) || t >= line.time_limit {
            break;
        }
        if !progress {
            let candidates = [
                Some(up.busy_until),
                Some(down.busy_until),
                up.arrivals.front().map(|a| a.0),
                down.arrivals.front().map(|a| a.0),
                sender.poll_timeout().map(secs),
                receiver.poll_timeout().map(secs),
                disconnects.first().copied(),
                restarts.first().copied(),
            ];
            let next = candidates.into_iter().flatten().filter(|&c| c > t).fold(t + 0.05, f64::min);
            t = next.max(t + 1e-7);
        }
    }
    r.elapsed = all_ended_at.unwrap_or(t);
    let total: usize = workload.iter().map(|w| w.2.len()).sum();
    r.complete = sender.is_done()
        && workload.iter().all(|(id, _, data)| {
            r.ends.get(id) == Some(&(data.len() as u64, true))
                && r.streams.get(id).map_or(data.is_empty(), |s| s == data)
        });
    if line.rate > 0 && r.elapsed > 0.0 {
        r.goodput_pct = 100.0 * total as f64 / (r.elapsed * line.rate as f64);
    }
    r.sender = sender.stats();
    r.acks_sent = receiver.stats().acks_sent;
    r
}

fn record(r: &mut SimResult, ev: RxEvent) {
    match ev {
        RxEvent::Text(t) => r.text.extend_from_slice(&t),
        RxEvent::NewSession { .. } => r.new_sessions += 1,
        RxEvent::Hello { payload, .. } => r.hellos.push(payload),
        RxEvent::Data { stream, offset, bytes } => {
            let s = r.streams.entry(stream).or_default();
            if s.len() as u64 != offset {
                r.order_violations += 1;
            }
            s.extend_from_slice(&bytes);
        }
        RxEvent::StreamEnd { stream, len, verified, .. } => {
            r.ends.insert(stream, (len, verified));
        }
        RxEvent::Rejected { reason, count } => *r.rejected.entry(reason).or_default() += count as u64,
    }
}

#[derive(Default)]
struct PipeState {
    up: VecDeque<u8>,
    down: VecDeque<u8>,
    broken: bool,
    console: Vec<u8>,
}

type Shared = Arc<(Mutex<PipeState>, Condvar)>;

/// Agent end of a [`pipe`]: a [`Transport`] in real time.
pub struct PipeTransport {
    shared: Shared,
    wire: Wire,
    rate: u64,
    two_way: bool,
    start: Instant,
}

/// Host end of a [`pipe`].
pub struct PipeHost {
    shared: Shared,
    wire: Wire,
}

/// A real-time line for the threaded uplink: writes are throttled to `line.rate` (unless 0)
/// and damaged by `line.up` faults; the host end can break the link.
pub fn pipe(line: &LineConfig) -> (PipeTransport, PipeHost) {
    let shared: Shared = Arc::default();
    let agent = PipeTransport {
        shared: shared.clone(),
        wire: Wire::new(line.up.clone(), line.seed),
        rate: line.rate,
        two_way: line.two_way,
        start: Instant::now(),
    };
    let host = PipeHost { shared, wire: Wire::new(line.down.clone(), line.seed ^ 0xD0E) };
    (agent, host)
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, PipeState> {
    s.0.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport for PipeTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if lock(&self.shared).broken {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "simulated link broken"));
        }
        if self.rate > 0 {
            std::thread::sleep(Duration::from_secs_f64(bytes.len() as f64 / self.rate as f64));
        }
        let t = self.start.elapsed().as_secs_f64();
        let mut console = Vec::new();
        let chunks = self.wire.transmit(bytes, t, &mut console);
        let mut st = lock(&self.shared);
        st.console.extend_from_slice(&console);
        for c in chunks {
            st.up.extend(c);
        }
        self.shared.1.notify_all();
        Ok(())
    }

    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared);
        loop {
            if st.broken {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "simulated link broken"));
            }
            if !st.down.is_empty() && self.two_way {
                let n = buf.len().min(st.down.len());
                for (i, b) in st.down.drain(..n).enumerate() {
                    buf[i] = b;
                }
                return Ok(n);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            st = self.shared.1.wait_timeout(st, left).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn is_two_way(&self) -> bool {
        self.two_way
    }

    fn reconnect(&mut self) -> io::Result<()> {
        let mut st = lock(&self.shared);
        st.broken = false;
        st.up.clear();
        st.down.clear();
        Ok(())
    }

    fn nominal_rate(&self) -> Option<u64> {
        (self.rate > 0).then_some(self.rate)
    }

    fn describe(&self) -> String {
        "sim:pipe".into()
    }
}

impl PipeHost {
    /// Bytes from the agent, waiting at most `timeout` for some.
    pub fn read(&self, timeout: Duration) -> Vec<u8> {
        let mut st = lock(&self.shared);
        if st.up.is_empty() {
            st = self.shared.1.wait_timeout(st, timeout).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
        }
        st.up.drain(..).collect()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let mut console = Vec::new();
        let chunks = self.wire.transmit(bytes, 0.0, &mut console);
        let mut st = lock(&self.shared);
        for c in chunks {
            st.down.extend(c);
        }
        self.shared.1.notify_all();
    }

    /// Break the link: the agent's next read or write fails until it reconnects.
    pub fn disconnect(&self) {
        let mut st = lock(&self.shared);
        st.broken = true;
        st.up.clear();
        st.down.clear();
        self.shared.1.notify_all();
    }

    /// Console text the line inserted so far.
    pub fn console_injected(&self) -> Vec<u8> {
        lock(&self.shared).console.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_errors_follow_the_rate() {
        let mut w = Wire::new(Faults { ber: 1e-3, ..Faults::default() }, 7);
        let data = vec![0u8; 100_000];
        let mut c = Vec::new();
        let flipped: u32 = (0..10)
            .map(|_| w.transmit(&data, 0.0, &mut c)[0].iter().map(|b| b.count_ones()).sum::<u32>())
            .sum();
        assert!((6000..10000).contains(&flipped), "{flipped} bits flipped of 8e6 at 1e-3");
        let mut clean = Wire::new(Faults::default(), 7);
        assert_eq!(clean.transmit(&data, 0.0, &mut c), vec![data.clone()]);
    }
}
