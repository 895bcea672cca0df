//! Agent side of the protocol, sans-IO: streams in, wire bytes out.
//!
//! Every stream byte is sent in data frames at its offset and kept until it is known to
//! have arrived: acknowledged (two-way links) or sent `one_way_repeats` times (one-way).
//! Losses are repaired by selective repeat (never go-back-N); the frame size follows the
//! observed loss rate (see [`optimal_frame_size`]).

use super::frame::{self, Ack, Decoded, Direction, Frame, Message, RejectReason};
use super::{Key, Priority, StreamId};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// The host answers (acks, resume); otherwise frames are repeated blindly.
    pub two_way: bool,
    /// Stream bytes per data frame at the start, and always on one-way links.
    pub initial_frame: usize,
    pub min_frame: usize,
    pub max_frame: usize,
    /// Most bytes in flight, and most bytes buffered per stream.
    pub window_bytes: usize,
    /// One-way links: copies of every data and end frame (1 = no repetition).
    pub one_way_repeats: u32,
    /// One-way links: the hello is repeated every this many frames.
    pub one_way_hello_every: u32,
    /// A heartbeat goes out when nothing else was sent for this long.
    pub heartbeat_interval: Duration,
    /// Two-way links: no valid frame from the host for this long while data is waiting:
    /// say hello again (the host may have restarted).
    pub link_timeout: Duration,
    /// Line capacity in bytes per second when known (serial: baud / 10).
    pub nominal_rate: Option<u64>,
}

impl SenderConfig {
    /// Defaults for a link: serial-sized frames up to 1 MB/s, TCP-sized above or unknown.
    pub fn for_link(two_way: bool, nominal_rate: Option<u64>) -> SenderConfig {
        let slow = nominal_rate.is_some_and(|r| r <= 1_000_000);
        SenderConfig {
            two_way,
            initial_frame: if slow { 1024 } else { 16 * 1024 },
            min_frame: 64,
            max_frame: if slow { 16 * 1024 } else { frame::MAX_DATA },
            window_bytes: if slow { 64 * 1024 } else { 1024 * 1024 },
            one_way_repeats: 2,
            one_way_hello_every: 64,
            heartbeat_interval: Duration::from_secs(if slow { 5 } else { 2 }),
            link_timeout: Duration::from_secs(if slow { 20 } else { 10 }),
            nominal_rate,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    UnknownStream(StreamId),
    Closed(StreamId),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::UnknownStream(s) => write!(f, "stream {s} was not opened (call open first)"),
            SendError::Closed(s) => write!(f, "stream {s} is already closed"),
        }
    }
}

impl std::error::Error for SendError {}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SenderStats {
    pub frames_sent: u64,
    pub data_frames_sent: u64,
    /// Data and end frames sent again (losses, timeouts, one-way copies).
    pub retransmitted: u64,
    pub wire_bytes_sent: u64,
    /// Stream bytes per data frame now.
    pub frame_size: usize,
    pub acks_received: u64,
    pub link_resets: u64,
    /// Frames from the host that were rejected (noise, bad tag, replay...).
    pub rejected: u64,
    /// Last good/bad frame counts the host reported.
    pub host_good: u32,
    pub host_bad: u32,
    pub ber_estimate: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    /// Closed: the end record is due once all data went out.
    Pending,
    InFlight,
    Done,
}

struct Tx {
    prio: Priority,
    /// Bytes `[base, written)`; everything below `base` arrived.
    buf: VecDeque<u8>,
    base: u64,
    written: u64,
    /// Lowest offset never sent.
    next: u64,
    /// Ranges above `base` known to have arrived, ascending, disjoint.
    acked: Vec<(u64, u64)>,
    /// Ranges to send again, ascending, disjoint, never overlapping `acked`.
    retx: Vec<(u64, u64)>,
    hasher: Sha256,
    digest: [u8; 32],
    end: End,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello,
    Data { stream: StreamId, offset: u64, len: usize },
    End { stream: StreamId },
}

struct Seg {
    kind: Kind,
    sent_at: Instant,
    /// `bytes_sent` when this copy went out (one-way spacing of copies).
    at_bytes: u64,
    copies: u32,
    wire_len: usize,
}

/// Decayed counts of data frames resolved (arrived or lost) and their bits.
struct LossEstimate {
    lost: f64,
    frames: f64,
    bits: f64,
}

impl LossEstimate {
    const DECAY: f64 = 0.98;
    fn record(&mut self, lost: bool, wire_len: usize) {
        self.lost = self.lost * Self::DECAY + lost as u8 as f64;
        self.frames = self.frames * Self::DECAY + 1.0;
        self.bits = self.bits * Self::DECAY + 8.0 * wire_len as f64;
    }
    /// Bit error rate that explains the frame loss rate at the sizes sent.
    fn ber(&self) -> Option<f64> {
        if self.frames < 4.0 {
            return None;
        }
        let p = ((self.lost + 0.02) / (self.frames + 0.04)).min(0.99);
        Some(-(1.0 - p).ln() / (self.bits / self.frames))
    }
}

/// The payload size `s` maximising `s/(s+o) * (1-ber)^(8(s+o))`, with `o` the bytes a
/// frame adds on the line. Setting the derivative of its log to zero gives
/// `s^2 + o*s - o/L = 0` with `L = -8 ln(1-ber)`.
pub fn optimal_frame_size(ber: f64, overhead: f64) -> f64 {
    let l = -8.0 * (1.0 - ber.clamp(0.0, 0.5)).ln();
    if l <= 0.0 {
        return f64::INFINITY;
    }
    (-overhead + (overhead * overhead + 4.0 * overhead / l).sqrt()) / 2.0
}

/// Line bytes of a data frame besides its stream bytes (header, tag, CRC, COBS, delimiters).
pub const FRAME_OVERHEAD: f64 = (frame::DATA_FRAME_OVERHEAD + 3) as f64;

pub struct Sender {
    key: Key,
    cfg: SenderConfig,
    session: u32,
    seq: u32,
    hello: Vec<u8>,
    /// Two-way: acks must echo a hello sent since the last reset (>= this seq).
    hello_floor: u32,
    hello_acked: bool,
    need_hello: bool,
    host_seq: Option<u32>,
    decoder: frame::Decoder,
    streams: BTreeMap<StreamId, Tx>,
    inflight: VecDeque<Seg>,
    inflight_bytes: usize,
    bytes_sent: u64,
    frames_since_hello: u32,
    log_run: u32,
    last_tx: Option<Instant>,
    /// Since when frames await an ack with no ack arriving (link timeout).
    waiting_since: Option<Instant>,
    srtt: Option<f64>,
    rttvar: f64,
    rto: f64,
    loss: LossEstimate,
    stats: SenderStats,
}

impl Sender {
    /// `hello_json` is the JSON of [`crate::events::Hello`]; the session id is random.
    pub fn new(key: Key, hello_json: Vec<u8>, cfg: SenderConfig) -> Sender {
        let mut id = [0u8; 4];
        if rustix::rand::getrandom(&mut id, rustix::rand::GetRandomFlags::empty()).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            id = (t.as_nanos() as u32 ^ std::process::id().rotate_left(16)).to_le_bytes();
        }
        Sender::with_session(key, hello_json, cfg, u32::from_le_bytes(id))
    }

    /// Like [`Sender::new`] with a chosen session id (tests, simulations).
    pub fn with_session(key: Key, mut hello_json: Vec<u8>, mut cfg: SenderConfig, session: u32) -> Sender {
        hello_json.truncate(frame::MAX_PAYLOAD);
        cfg.max_frame = cfg.max_frame.clamp(16, frame::MAX_DATA);
        cfg.min_frame = cfg.min_frame.clamp(16, cfg.max_frame);
        cfg.initial_frame = cfg.initial_frame.clamp(cfg.min_frame, cfg.max_frame);
        cfg.window_bytes = cfg.window_bytes.max(2 * cfg.max_frame);
        cfg.one_way_repeats = cfg.one_way_repeats.max(1);
        let rto = match cfg.nominal_rate {
            Some(r) if r > 0 => 0.5 + 3.0 * frame::data_frame_wire_len(cfg.initial_frame) as f64 / r as f64,
            _ => 1.0,
        };
        Sender {
            decoder: frame::Decoder::with_limit(key.clone(), Direction::HostToAgent, 16 * 1024),
            key,
            session,
            seq: 0,
            hello: hello_json,
            hello_floor: 0,
            hello_acked: false,
            need_hello: true,
            host_seq: None,
            streams: BTreeMap::new(),
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            bytes_sent: 0,
            frames_since_hello: 0,
            log_run: 0,
            last_tx: None,
            waiting_since: None,
            srtt: None,
            rttvar: 0.0,
            rto,
            loss: LossEstimate { lost: 0.0, frames: 0.0, bits: 0.0 },
            stats: SenderStats { frame_size: cfg.initial_frame, ..SenderStats::default() },
            cfg,
        }
    }

    pub fn session(&self) -> u32 {
        self.session
    }

    pub fn stats(&self) -> SenderStats {
        self.stats.clone()
    }

    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// Start a stream (again: only changes its priority).
    pub fn open(&mut self, stream: StreamId, prio: Priority) {
        let tx = self.streams.entry(stream).or_insert_with(|| Tx {
            prio,
            buf: VecDeque::new(),
            base: 0,
            written: 0,
            next: 0,
            acked: Vec::new(),
            retx: Vec::new(),
            hasher: Sha256::new(),
            digest: [0; 32],
            end: End::Open,
        });
        tx.prio = prio;
    }

    /// Queue bytes; takes as many as the stream's buffer has room for (maybe 0).
    pub fn write(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, SendError> {
        let limit = self.cfg.window_bytes;
        let tx = self.streams.get_mut(&stream).ok_or(SendError::UnknownStream(stream))?;
        if tx.end != End::Open {
            return Err(SendError::Closed(stream));
        }
        let n = data.len().min(limit.saturating_sub(tx.buf.len()));
        tx.buf.extend(&data[..n]);
        tx.hasher.update(&data[..n]);
        tx.written += n as u64;
        Ok(n)
    }

    /// Bytes of the stream not yet known to have arrived.
    pub fn buffered(&self, stream: StreamId) -> usize {
        self.streams.get(&stream).map_or(0, |t| t.buf.len())
    }

    pub fn can_accept(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_some_and(|t| t.end == End::Open && t.buf.len() < self.cfg.window_bytes)
    }

    /// No more bytes: an end record with the length and sha256 follows the data.
    pub fn close(&mut self, stream: StreamId) -> Result<(), SendError> {
        let tx = self.streams.get_mut(&stream).ok_or(SendError::UnknownStream(stream))?;
        if tx.end == End::Open {
            tx.digest = std::mem::take(&mut tx.hasher).finalize().into();
            tx.end = End::Pending;
        }
        Ok(())
    }

    pub fn open_streams(&self) -> Vec<StreamId> {
        self.streams.iter().filter(|(_, t)| t.end == End::Open).map(|(s, _)| *s).collect()
    }

    /// Everything arrived (two-way) or was sent with all its copies (one-way).
    pub fn is_done(&self) -> bool {
        let streams_done =
            self.streams.values().all(|t| t.end == End::Done && t.buf.is_empty() && t.retx.is_empty());
        let hello_done = if self.cfg.two_way { self.hello_acked } else { self.stats.frames_sent > 0 };
        streams_done && hello_done && self.inflight.is_empty()
    }

    /// The link was re-established (new TCP connection, reopened port): frames in flight
    /// are presumed lost; say hello again and resume from what the host acknowledges.
    pub fn reset_link(&mut self) {
        for seg in std::mem::take(&mut self.inflight) {
            self.requeue(seg.kind);
        }
        self.inflight_bytes = 0;
        self.need_hello = true;
        self.hello_acked = false;
        self.host_seq = None;
        self.hello_floor = self.seq;
        self.decoder = frame::Decoder::with_limit(self.key.clone(), Direction::HostToAgent, 16 * 1024);
        self.stats.link_resets += 1;
    }

    /// Feed bytes received from the host.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        for item in self.decoder.push(bytes) {
            match item {
                Decoded::Frame(f) => match self.accept(&f) {
                    Ok(()) => {
                        if let Message::Ack(ack) = f.msg {
                            self.on_ack(&ack, now);
                        }
                    }
                    Err(_) => self.stats.rejected += 1,
                },
                Decoded::Rejected(_) => self.stats.rejected += 1,
                Decoded::Text(_) => {}
            }
        }
    }

    fn accept(&mut self, f: &Frame) -> Result<(), RejectReason> {
        if f.session != self.session {
            return Err(RejectReason::OtherSession);
        }
        let Message::Ack(ack) = &f.msg else { return Err(RejectReason::Malformed) };
        let fresh_hello = ack.hello_seq >= self.hello_floor && ack.hello_seq < self.seq;
        if !fresh_hello || self.host_seq.is_some_and(|s| f.seq <= s) {
            return Err(RejectReason::Replayed);
        }
        self.host_seq = Some(f.seq);
        Ok(())
    }

    fn on_ack(&mut self, ack: &Ack, now: Instant) {
        if self.waiting_since.is_some() {
            self.waiting_since = Some(now);
        }
        self.stats.acks_received += 1;
        self.stats.host_good = ack.good;
        self.stats.host_bad = ack.bad;
        self.hello_acked = true;
        self.need_hello = false;
        for sa in &ack.streams {
            if let Some(tx) = self.streams.get_mut(&sa.stream) {
                tx.mark_arrived(0, sa.cum);
                for &(s, e) in &sa.sacks {
                    tx.mark_arrived(s, e);
                }
                if sa.ended && tx.end == End::InFlight && tx.base == tx.written {
                    tx.end = End::Done;
                }
            }
        }
        // Resolve frames in flight; one sent before a frame that arrived is lost (links
        // keep order), so it is repaired at once instead of at its timeout.
        let segs = std::mem::take(&mut self.inflight);
        let last_arrived = segs.iter().rposition(|s| self.arrived(s.kind));
        for (i, seg) in segs.into_iter().enumerate() {
            if self.arrived(seg.kind) {
                self.inflight_bytes = self.inflight_bytes.saturating_sub(seg.len());
                if let Kind::Data { .. } = seg.kind {
                    self.loss.record(false, seg.wire_len);
                    if seg.copies == 1 {
                        let rtt = now.saturating_duration_since(seg.sent_at).as_secs_f64();
                        self.rtt_sample((rtt - self.tx_time(seg.wire_len)).max(0.0));
                    }
                }
            } else if last_arrived.is_some_and(|l| i < l) {
                self.lost(seg);
            } else {
                self.inflight.push_back(seg);
            }
        }
        self.adapt_frame_size();
    }

    fn arrived(&self, kind: Kind) -> bool {
        match kind {
            Kind::Hello => self.hello_acked,
            Kind::Data { stream, offset, len } => {
                self.streams.get(&stream).is_none_or(|t| t.has_arrived(offset, offset + len as u64))
            }
            Kind::End { stream } => self.streams.get(&stream).is_none_or(|t| t.end == End::Done),
        }
    }

    fn lost(&mut self, seg: Seg) {
        self.inflight_bytes = self.inflight_bytes.saturating_sub(seg.len());
        if let Kind::Data { .. } = seg.kind {
            self.loss.record(true, seg.wire_len);
        }
        self.requeue(seg.kind);
    }

    fn requeue(&mut self, kind: Kind) {
        match kind {
            Kind::Hello => self.need_hello = true,
            Kind::Data { stream, offset, len } => {
                if let Some(tx) = self.streams.get_mut(&stream) {
                    tx.add_retx(offset, offset + len as u64);
                }
            }
            Kind::End { stream } => {
                if let Some(tx) = self.streams.get_mut(&stream) {
                    if tx.end == End::InFlight {
                        tx.end = End::Pending;
                    }
                }
            }
        }
    }

    fn rtt_sample(&mut self, r: f64) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(s) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (s - r).abs();
                self.srtt = Some(0.875 * s + 0.125 * r);
            }
        }
        self.rto = (self.srtt.unwrap_or(r) + 4.0 * self.rttvar).clamp(0.2, 30.0);
    }

    /// Seconds the line takes to carry `n` bytes (0 when its rate is unknown). RTT samples
    /// leave it out and timeouts add it back, so frame size changes do not fire timeouts.
    fn tx_time(&self, n: usize) -> f64 {
        self.cfg.nominal_rate.filter(|&r| r > 0).map_or(0.0, |r| n as f64 / r as f64)
    }

    fn deadline(&self, seg: &Seg) -> Instant {
        seg.sent_at + Duration::from_secs_f64(self.rto + self.tx_time(seg.wire_len))
    }

    fn adapt_frame_size(&mut self) {
        if let Some(ber) = self.loss.ber() {
            self.stats.ber_estimate = ber;
            let s = optimal_frame_size(ber, FRAME_OVERHEAD).min(self.cfg.max_frame as f64) as usize;
            self.stats.frame_size = (s / 16 * 16).clamp(self.cfg.min_frame, self.cfg.max_frame);
        }
    }

    /// Bytes allowed in flight: twice rate x RTT when the rate is known, at least 8 frames.
    fn window(&self) -> usize {
        let frames8 = 8 * frame::data_frame_wire_len(self.stats.frame_size);
        let bdp = match (self.cfg.nominal_rate, self.srtt) {
            (Some(r), Some(rtt)) => (4.0 * r as f64 * rtt) as usize,
            _ => self.cfg.window_bytes,
        };
        bdp.max(frames8).max(4096).min(self.cfg.window_bytes)
    }

    /// When [`Sender::poll_transmit`] may have something to send even without new input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hb = self.last_tx.map(|t| t + self.cfg.heartbeat_interval);
        let seg = if self.cfg.two_way { self.inflight.iter().map(|s| self.deadline(s)).min() } else { None };
        [hb, seg].into_iter().flatten().min()
    }

    /// The next frame to put on the line, if any (call until `None`).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let (msg, tracked) = self.next_message(now)?;
        if let Message::Hello(_) = msg {
            self.frames_since_hello = 0;
        }
        let frame = Frame { session: self.session, seq: self.seq, msg };
        let mut out = Vec::with_capacity(frame::data_frame_wire_len(self.stats.frame_size));
        frame::encode(&frame, &self.key, Direction::AgentToHost, &mut out);
        self.seq = self.seq.wrapping_add(1);
        self.stats.frames_sent += 1;
        self.stats.wire_bytes_sent += out.len() as u64;
        self.bytes_sent += out.len() as u64;
        self.frames_since_hello = self.frames_since_hello.saturating_add(1);
        self.last_tx = Some(now);
        if let Some((kind, copies)) = tracked {
            self.track(Seg { kind, sent_at: now, at_bytes: self.bytes_sent, copies, wire_len: out.len() });
        }
        Some(out)
    }

    /// Keep a frame just sent until it is acknowledged (or, one-way, all its copies went).
    fn track(&mut self, seg: Seg) {
        if !self.cfg.two_way && seg.copies >= self.cfg.one_way_repeats {
            self.copies_done(seg.kind);
            return;
        }
        self.inflight_bytes += seg.len();
        self.inflight.push_back(seg);
    }

    /// What to send next, and what to keep in flight for it: (what, copies sent with this).
    fn next_message(&mut self, now: Instant) -> Option<(Message, Option<(Kind, u32)>)> {
        if self.cfg.two_way {
            self.expire(now);
            if self.need_hello {
                self.need_hello = false;
                return Some((Message::Hello(self.hello.clone()), Some((Kind::Hello, 1))));
            }
            if !self.hello_acked {
                return None;
            }
        } else {
            if self.need_hello || self.frames_since_hello >= self.cfg.one_way_hello_every {
                self.need_hello = false;
                return Some((Message::Hello(self.hello.clone()), None));
            }
            if let Some(m) = self.repeat_one_way(false) {
                return Some(m);
            }
        }
        if let Some(m) = self.next_stream_message() {
            return Some(m);
        }
        if !self.cfg.two_way {
            if let Some(m) = self.repeat_one_way(true) {
                return Some(m);
            }
        }
        let idle = self.last_tx.is_none_or(|t| now >= t + self.cfg.heartbeat_interval);
        idle.then_some((Message::Heartbeat, None))
    }

    /// Two-way: frames unacknowledged for the retransmission timeout are lost; no word
    /// from the host for the link timeout: hello again.
    fn expire(&mut self, now: Instant) {
        if self.inflight.iter().any(|s| now >= self.deadline(s)) {
            let segs = std::mem::take(&mut self.inflight);
            for seg in segs {
                if now >= self.deadline(&seg) {
                    self.lost(seg);
                } else {
                    self.inflight.push_back(seg);
                }
            }
            self.rto = (self.rto * 2.0).min(30.0);
            self.adapt_frame_size();
        }
        let awaiting = !self.inflight.is_empty() || self.streams.values().any(|t| !t.retx.is_empty());
        if !awaiting {
            self.waiting_since = None;
        } else {
            let since = *self.waiting_since.get_or_insert(now);
            if self.hello_acked && now >= since + self.cfg.link_timeout {
                self.waiting_since = Some(now);
                self.reset_link();
            }
        }
    }

    /// One-way: send the next copy of a frame once enough other bytes went out since its
    /// previous copy (spreading copies beats bursts), or at once when `idle`.
    fn repeat_one_way(&mut self, idle: bool) -> Option<(Message, Option<(Kind, u32)>)> {
        let spread = (self.cfg.window_bytes / self.cfg.one_way_repeats as usize) as u64;
        let i = self
            .inflight
            .iter()
            .position(|s| idle || self.bytes_sent >= s.at_bytes.saturating_add(spread))?;
        let seg = self.inflight.remove(i)?;
        self.inflight_bytes = self.inflight_bytes.saturating_sub(seg.len());
        let msg = self.message_for(seg.kind)?;
        self.stats.retransmitted += 1;
        Some((msg, Some((seg.kind, seg.copies + 1))))
    }

    fn copies_done(&mut self, kind: Kind) {
        match kind {
            Kind::Data { stream, offset, len } => {
                if let Some(tx) = self.streams.get_mut(&stream) {
                    tx.mark_arrived(offset, offset + len as u64);
                }
            }
            Kind::End { stream } => {
                if let Some(tx) = self.streams.get_mut(&stream) {
                    tx.end = End::Done;
                }
            }
            Kind::Hello => {}
        }
    }

    fn message_for(&self, kind: Kind) -> Option<Message> {
        match kind {
            Kind::Hello => Some(Message::Hello(self.hello.clone())),
            Kind::Data { stream, offset, len } => {
                let tx = self.streams.get(&stream)?;
                let start = offset.checked_sub(tx.base)? as usize;
                if start + len > tx.buf.len() {
                    return None;
                }
                let bytes: Vec<u8> = tx.buf.range(start..start + len).copied().collect();
                Some(Message::Data { stream, offset, bytes })
            }
            Kind::End { stream } => {
                let tx = self.streams.get(&stream)?;
                Some(Message::End { stream, len: tx.written, sha256: tx.digest })
            }
        }
    }

    /// Next data or end frame, by priority: control first, logs before bulk but bulk gets
    /// every fourth frame when both wait.
    fn next_stream_message(&mut self) -> Option<(Message, Option<(Kind, u32)>)> {
        let order = if self.log_run >= 3 {
            [Priority::Control, Priority::Bulk, Priority::Log]
        } else {
            [Priority::Control, Priority::Log, Priority::Bulk]
        };
        let size = self.stats.frame_size;
        let room = self.window().saturating_sub(self.inflight_bytes);
        let window_open = self.inflight_bytes == 0 || room >= size.min(64);
        for prio in order {
            let ids: Vec<StreamId> =
                self.streams.iter().filter(|(_, t)| t.prio == prio).map(|(s, _)| *s).collect();
            for id in ids {
                let Some(tx) = self.streams.get_mut(&id) else { continue };
                let pick = if let Some(&(s, e)) = tx.retx.first() {
                    window_open.then_some((s, (e - s).min(size as u64) as usize, true))
                } else if tx.next < tx.written {
                    let len = (tx.written - tx.next).min(size as u64) as usize;
                    window_open.then_some((tx.next, len, false))
                } else if tx.end == End::Pending && tx.next == tx.written {
                    tx.end = End::InFlight;
                    let msg = Message::End { stream: id, len: tx.written, sha256: tx.digest };
                    return Some((msg, Some((Kind::End { stream: id }, 1))));
                } else {
                    None
                };
                let Some((offset, len, again)) = pick else { continue };
                let end = offset + len as u64;
                if again {
                    tx.remove_retx(offset, end);
                    self.stats.retransmitted += 1;
                } else {
                    tx.next = end;
                }
                self.log_run = if prio == Priority::Log { self.log_run + 1 } else { 0 };
                self.stats.data_frames_sent += 1;
                let kind = Kind::Data { stream: id, offset, len };
                return self.message_for(kind).map(|m| (m, Some((kind, 1))));
            }
        }
        None
    }
}

impl Seg {
    fn len(&self) -> usize {
        match self.kind {
            Kind::Data { len, .. } => len,
            _ => 0,
        }
    }
}

impl Tx {
    fn has_arrived(&self, s: u64, e: u64) -> bool {
        e <= self.base || self.acked.iter().any(|&(a, b)| a <= s.max(self.base) && e <= b)
    }

    fn mark_arrived(&mut self, s: u64, e: u64) {
        // Only bytes sent can have arrived, whatever an ack claims.
        let (s, e) = (s.max(self.base), e.min(self.next));
        if s >= e {
            return;
        }
        insert_range(&mut self.acked, s, e);
        subtract_range(&mut self.retx, s, e);
        if self.acked[0].0 <= self.base {
            let new_base = self.acked.remove(0).1;
            let drop = (new_base - self.base) as usize;
            self.buf.drain(..drop.min(self.buf.len()));
            self.base = new_base;
        }
    }

    fn add_retx(&mut self, s: u64, e: u64) {
        let mut parts = vec![(s.max(self.base), e)];
        for &(a, b) in &self.acked {
            subtract_range(&mut parts, a, b);
        }
        for (a, b) in parts {
            if a < b {
                insert_range(&mut self.retx, a, b);
            }
        }
    }

    fn remove_retx(&mut self, s: u64, e: u64) {
        subtract_range(&mut self.retx, s, e);
    }
}

/// Insert `[s, e)` into ascending disjoint ranges, merging neighbours.
fn insert_range(v: &mut Vec<(u64, u64)>, mut s: u64, mut e: u64) {
    let i = v.partition_point(|r| r.1 < s);
    while i < v.len() && v[i].0 <= e {
        s = s.min(v[i].0);
        e = e.max(v[i].1);
        v.remove(i);
    }
    v.insert(i, (s, e));
}

/// Remove `[s, e)` from ascending disjoint ranges.
fn subtract_range(v: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    let mut out = Vec::with_capacity(v.len() + 1);
    for &(a, b) in v.iter() {
        if b <= s || a >= e {
            out.push((a, b));
        } else {
            if a < s {
                out.push((a, s));
            }
            if b > e {
                out.push((e, b));
            }
        }
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_formula() {
        let o = FRAME_OVERHEAD;
        let at = |ber| optimal_frame_size(ber, o);
        assert!(at(0.0).is_infinite());
        assert!((150.0..400.0).contains(&at(1e-4)), "{}", at(1e-4));
        assert!((600.0..1000.0).contains(&at(1e-5)), "{}", at(1e-5));
        assert!(at(1e-7) > 7000.0);
        // It is a maximum: neighbours do no better.
        let g = |s: f64, ber: f64| s / (s + o) * (1.0f64 - ber).powf(8.0 * (s + o));
        for ber in [1e-3, 1e-4, 1e-5, 1e-6] {
            let s = at(ber);
            assert!(g(s, ber) >= g(s * 0.8, ber) && g(s, ber) >= g(s * 1.25, ber));
        }
    }

    #[test]
    fn ranges() {
        let mut v = vec![];
        insert_range(&mut v, 10, 20);
        insert_range(&mut v, 30, 40);
        insert_range(&mut v, 20, 30);
        assert_eq!(v, vec![(10, 40)]);
        subtract_range(&mut v, 15, 25);
        assert_eq!(v, vec![(10, 15), (25, 40)]);
        insert_range(&mut v, 0, 5);
        assert_eq!(v, vec![(0, 5), (10, 15), (25, 40)]);
    }
}
