//! Host side of the protocol, sans-IO: wire bytes in, console text and ordered stream
//! bytes out, acknowledgements back.
//!
//! The receiver follows one session at a time: the first authenticated frame picks it, a
//! hello of a session never seen before switches to it, and frames of any other session
//! are rejected. Every stream byte is delivered once, in order; the end record is checked
//! against the sha256 of what was delivered.

use super::frame::{self, Ack, Decoded, Direction, Frame, Message, RejectReason, StreamAck};
use super::{Key, StreamId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RxEvent {
    /// Console output between frames.
    Text(Vec<u8>),
    /// Frames of `session` are accepted from now on (`previous` is the one left).
    NewSession { session: u32, previous: Option<u32> },
    /// A hello with a new payload (the JSON of `events::Hello`).
    Hello { session: u32, payload: Vec<u8> },
    /// The next bytes of `stream`, at `offset` = everything delivered before.
    Data { stream: StreamId, offset: u64, bytes: Vec<u8> },
    /// All `len` bytes were delivered; `verified` when their sha256 is the sender's.
    StreamEnd { stream: StreamId, len: u64, sha256: [u8; 32], verified: bool },
    /// `count` frames in a row were dropped for `reason`.
    Rejected { reason: RejectReason, count: u32 },
}

#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// Bytes held per stream beyond a gap, waiting for the missing frames.
    pub max_out_of_order: usize,
    /// In-order data is acknowledged at most this late (gaps, ends, hellos at once).
    pub ack_delay: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig { max_out_of_order: 4 * 1024 * 1024, ack_delay: Duration::from_millis(10) }
    }
}

#[derive(Default)]
struct Rx {
    next: u64,
    hasher: Sha256,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    end: Option<(u64, [u8; 32])>,
    finished: bool,
    dirty: bool,
}

/// Sequence numbers seen: the highest and a bitmap of the 128 below it.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct ReplayWindow {
    top: Option<u32>,
    bits: u128,
}

impl ReplayWindow {
    fn check_and_set(&mut self, seq: u32) -> bool {
        let Some(top) = self.top else {
            self.top = Some(seq);
            self.bits = 1;
            return true;
        };
        if seq > top {
            let shift = seq - top;
            self.bits = if shift >= 128 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.top = Some(seq);
            true
        } else {
            let back = top - seq;
            if back >= 128 || self.bits & (1 << back) != 0 {
                return false;
            }
            self.bits |= 1 << back;
            true
        }
    }
}

/// What a restarted host needs to resume (see [`Receiver::restore`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub session: Option<u32>,
    pub seen_sessions: Vec<u32>,
    pub replay_top: Option<u32>,
    pub hello_seq: Option<u32>,
    pub host_seq: u32,
    pub streams: Vec<StreamSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSnapshot {
    pub stream: StreamId,
    pub delivered: u64,
    pub finished: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub frames_good: u64,
    pub frames_corrupt: u64,
    pub frames_rejected: u64,
    pub duplicates: u64,
    pub acks_sent: u64,
}

pub struct Receiver {
    key: Key,
    cfg: ReceiverConfig,
    decoder: frame::Decoder,
    session: Option<u32>,
    seen: Vec<u32>,
    replay: ReplayWindow,
    hello_seq: Option<u32>,
    last_hello: Vec<u8>,
    seq: u32,
    streams: BTreeMap<StreamId, Rx>,
    good: u32,
    bad: u32,
    ack_due: Option<Instant>,
    in_order_since_ack: u32,
    stats: ReceiverStats,
}

impl Receiver {
    pub fn new(key: Key) -> Receiver {
        Receiver::with_config(key, ReceiverConfig::default())
    }

    pub fn with_config(key: Key, cfg: ReceiverConfig) -> Receiver {
        Receiver {
            decoder: frame::Decoder::new(key.clone(), Direction::AgentToHost),
            key,
            cfg,
            session: None,
            seen: Vec::new(),
            replay: ReplayWindow::default(),
            hello_seq: None,
            last_hello: Vec::new(),
            seq: 0,
            streams: BTreeMap::new(),
            good: 0,
            bad: 0,
            ack_due: None,
            in_order_since_ack: 0,
            stats: ReceiverStats::default(),
        }
    }

    pub fn session(&self) -> Option<u32> {
        self.session
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// A new connection: forget a partly received frame (sessions and streams stay).
    pub fn reset_link(&mut self) {
        self.decoder = frame::Decoder::new(self.key.clone(), Direction::AgentToHost);
    }

    pub fn stats(&self) -> ReceiverStats {
        self.stats.clone()
    }

    /// Bytes of `stream` delivered so far.
    pub fn delivered(&self, stream: StreamId) -> u64 {
        self.streams.get(&stream).map_or(0, |r| r.next)
    }

    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Vec<RxEvent> {
        let mut events = Vec::new();
        for item in self.decoder.push(bytes) {
            match item {
                Decoded::Text(t) => events.push(RxEvent::Text(t)),
                Decoded::Rejected(reason) => self.reject(reason, &mut events),
                Decoded::Frame(f) => match self.accept(&f, &mut events) {
                    Ok(()) => self.on_frame(f, now, &mut events),
                    Err(reason) => self.reject(reason, &mut events),
                },
            }
        }
        events
    }

    fn reject(&mut self, reason: RejectReason, events: &mut Vec<RxEvent>) {
        if reason == RejectReason::Corrupt {
            self.bad = self.bad.wrapping_add(1);
            self.stats.frames_corrupt += 1;
        }
        self.stats.frames_rejected += 1;
        if let Some(RxEvent::Rejected { reason: r, count }) = events.last_mut() {
            if *r == reason {
                *count += 1;
                return;
            }
        }
        events.push(RxEvent::Rejected { reason, count: 1 });
    }

    fn accept(&mut self, f: &Frame, events: &mut Vec<RxEvent>) -> Result<(), RejectReason> {
        if matches!(f.msg, Message::Ack(_)) {
            return Err(RejectReason::WrongDirection);
        }
        if self.session != Some(f.session) {
            let switch = self.session.is_none() || matches!(f.msg, Message::Hello(_));
            if !switch || self.seen.contains(&f.session) {
                return Err(RejectReason::OtherSession);
            }
            let previous = self.session.replace(f.session);
            self.seen.extend(previous);
            if self.seen.len() > 64 {
                self.seen.remove(0);
            }
            self.replay = ReplayWindow::default();
            self.streams.clear();
            self.hello_seq = None;
            self.last_hello.clear();
            events.push(RxEvent::NewSession { session: f.session, previous });
        }
        if !self.replay.check_and_set(f.seq) {
            return Err(RejectReason::Replayed);
        }
        self.good = self.good.wrapping_add(1);
        self.stats.frames_good += 1;
        Ok(())
    }

    fn on_frame(&mut self, f: Frame, now: Instant, events: &mut Vec<RxEvent>) {
        let urgent = Some(now);
        match f.msg {
            Message::Hello(payload) => {
                self.hello_seq = Some(self.hello_seq.map_or(f.seq, |s| s.max(f.seq)));
                if payload != self.last_hello {
                    self.last_hello = payload.clone();
                    events.push(RxEvent::Hello { session: f.session, payload });
                }
                self.ack_due = urgent;
                for rx in self.streams.values_mut() {
                    rx.dirty = true;
                }
            }
            Message::Data { stream, offset, bytes } => {
                let max_ooo = self.cfg.max_out_of_order;
                let rx = self.streams.entry(stream).or_default();
                rx.dirty = true;
                let end = offset + bytes.len() as u64;
                if end <= rx.next || rx.finished {
                    self.stats.duplicates += 1;
                    self.ack_due = urgent;
                } else if offset <= rx.next {
                    let skip = (rx.next - offset) as usize;
                    rx.deliver(stream, bytes[skip..].to_vec(), events);
                    rx.drain(stream, events);
                    self.in_order_since_ack += 1;
                    let later = now + self.cfg.ack_delay;
                    let due = if self.in_order_since_ack >= 2 { now } else { later };
                    self.ack_due = Some(self.ack_due.map_or(due, |d| d.min(due)));
                } else {
                    if rx.ooo_bytes + bytes.len() <= max_ooo && !rx.ooo.contains_key(&offset) {
                        rx.ooo_bytes += bytes.len();
                        rx.ooo.insert(offset, bytes);
                    }
                    self.ack_due = urgent;
                }
                rx.check_end(stream, events);
            }
            Message::End { stream, len, sha256 } => {
                let rx = self.streams.entry(stream).or_default();
                rx.dirty = true;
                if rx.end.is_none() {
                    rx.end = Some((len, sha256));
                }
                rx.check_end(stream, events);
                self.ack_due = urgent;
            }
            Message::Heartbeat | Message::Ack(_) => {}
        }
    }

    /// When [`Receiver::poll_transmit`] wants to be called even without new input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ack_due
    }

    /// An acknowledgement to send to the agent (two-way links), if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let (session, hello_seq) = (self.session?, self.hello_seq?);
        if self.ack_due.is_none_or(|d| now < d) {
            return None;
        }
        self.ack_due = None;
        self.in_order_since_ack = 0;
        let mut streams: Vec<StreamAck> = Vec::new();
        let ids: Vec<StreamId> =
            self.streams.iter().filter(|(_, r)| r.dirty || !r.finished).map(|(s, _)| *s).collect();
        for id in ids.into_iter().take(frame::MAX_ACK_STREAMS) {
            let Some(rx) = self.streams.get_mut(&id) else { continue };
            rx.dirty = false;
            streams.push(StreamAck { stream: id, ended: rx.end.is_some(), cum: rx.next, sacks: rx.sacks() });
        }
        let ack = Ack { hello_seq, good: self.good, bad: self.bad, streams };
        let f = Frame { session, seq: self.seq, msg: Message::Ack(ack) };
        self.seq = self.seq.wrapping_add(1);
        self.stats.acks_sent += 1;
        let mut out = Vec::new();
        frame::encode(&f, &self.key, Direction::HostToAgent, &mut out);
        Some(out)
    }

    /// State to persist so a restarted host resumes (serialize it with serde).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            session: self.session,
            seen_sessions: self.seen.clone(),
            replay_top: self.replay.top,
            hello_seq: self.hello_seq,
            host_seq: self.seq,
            streams: self
                .streams
                .iter()
                .map(|(&stream, r)| StreamSnapshot { stream, delivered: r.next, finished: r.finished })
                .collect(),
        }
    }

    /// Resume from a snapshot. The sha256 state cannot be saved, so for every unfinished
    /// stream `prefix(stream)` must give the bytes delivered so far (the file the host
    /// wrote): they are hashed again, and their length is taken as the resume offset (the
    /// host writes data before it acknowledges, so its file is never shorter than acked).
    pub fn restore<F>(
        key: Key,
        cfg: ReceiverConfig,
        snap: &Snapshot,
        mut prefix: F,
    ) -> std::io::Result<Receiver>
    where
        F: FnMut(StreamId) -> std::io::Result<Box<dyn Read>>,
    {
        let mut r = Receiver::with_config(key, cfg);
        r.session = snap.session;
        r.seen = snap.seen_sessions.clone();
        if let Some(top) = snap.replay_top {
            // Frames after the snapshot are unknown: refuse everything up to its top.
            r.replay = ReplayWindow { top: Some(top), bits: u128::MAX };
        }
        r.hello_seq = snap.hello_seq;
        // Acks sent after the snapshot used higher numbers: leave a wide margin.
        r.seq = snap.host_seq.wrapping_add(1 << 20);
        for s in &snap.streams {
            let mut rx = Rx { finished: s.finished, next: s.delivered, ..Rx::default() };
            if !s.finished {
                let mut reader = prefix(s.stream)?;
                let mut buf = vec![0u8; 64 * 1024];
                rx.next = 0;
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(std::io::Error::new(
                                e.kind(),
                                format!("cannot re-read stream {} to resume: {e}", s.stream),
                            ))
                        }
                    };
                    rx.hasher.update(&buf[..n]);
                    rx.next += n as u64;
                }
            }
            rx.dirty = true;
            r.streams.insert(s.stream, rx);
        }
        Ok(r)
    }
}

impl Rx {
    fn deliver(&mut self, stream: StreamId, bytes: Vec<u8>, events: &mut Vec<RxEvent>) {
        if bytes.is_empty() {
            return;
        }
        self.hasher.update(&bytes);
        let offset = self.next;
        self.next += bytes.len() as u64;
        events.push(RxEvent::Data { stream, offset, bytes });
    }

    fn drain(&mut self, stream: StreamId, events: &mut Vec<RxEvent>) {
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (offset, bytes) = entry.remove_entry();
            self.ooo_bytes -= bytes.len();
            let end = offset + bytes.len() as u64;
            if end > self.next {
                let skip = (self.next - offset) as usize;
                self.deliver(stream, bytes[skip..].to_vec(), events);
            }
        }
    }

    fn sacks(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for (&o, b) in &self.ooo {
            let e = o + b.len() as u64;
            let full = v.len() == frame::MAX_SACKS;
            match v.last_mut() {
                Some(last) if o <= last.1 => last.1 = last.1.max(e),
                _ if full => break,
                _ => v.push((o, e)),
            }
        }
        v
    }

    fn check_end(&mut self, stream: StreamId, events: &mut Vec<RxEvent>) {
        if self.finished {
            return;
        }
        if let Some((len, sha256)) = self.end {
            if self.next >= len {
                self.finished = true;
                self.ooo.clear();
                self.ooo_bytes = 0;
                let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                let verified = self.next == len && digest == sha256;
                events.push(RxEvent::StreamEnd { stream, len, sha256, verified });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check_and_set(10));
        assert!(!w.check_and_set(10));
        assert!(w.check_and_set(12));
        assert!(w.check_and_set(11));
        assert!(!w.check_and_set(11));
        assert!(w.check_and_set(500));
        assert!(!w.check_and_set(12));
        assert!(w.check_and_set(499));
    }
}
