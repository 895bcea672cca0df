//! The thin layer over the protocol's receiver: bytes in, [`Incoming`] items out.
//! Everything after it (demux, files, report) knows nothing of frames.

use stagehand_proto::wire::receiver::{Receiver, ReceiverConfig, RxEvent, Snapshot};
use stagehand_proto::wire::Key;
use std::io::Read;
use std::time::Instant;

/// What the receiver makes of the bytes on the link.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// Bytes between frames: the board's console (kernel messages, a shell).
    Console(Vec<u8>),
    /// Frames of a new session are accepted from now on (an agent started or restarted).
    NewSession { previous: Option<u32> },
    /// An agent's hello (its payload is JSON of `events::Hello`).
    Hello { session: u32, payload: Vec<u8> },
    /// Bytes of a stream, in order, exactly once.
    Data { stream: u32, offset: u64, bytes: Vec<u8> },
    /// A stream ended: its length and sha256 (hex), `verified` when every frame's HMAC
    /// checked and the digest matches what was received.
    StreamEnd { stream: u32, len: u64, sha256: String, verified: bool },
    /// Frames that failed their check (noise, wrong key, tampering).
    Rejected { reason: String, count: u32 },
}

/// A protocol receiver, driven by the collector.
pub trait Link {
    fn input(&mut self, bytes: &[u8], now: Instant) -> Vec<Incoming>;
    /// Bytes to send back (acknowledgements) on two-way links.
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>>;
    /// State to save so a rerun resumes where this one stopped.
    fn snapshot(&self) -> Vec<u8>;
}

/// The per-image key file: 64 hex digits (and a newline), as `stagehand image` writes it.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<Key> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read key {}: {e}", path.display()))?;
    Key::from_hex(text.trim()).map_err(|e| {
        anyhow::anyhow!("{} is not a stagehand key (64 hex digits expected): {e}", path.display())
    })
}

struct Wire(Receiver);

impl Link for Wire {
    fn input(&mut self, bytes: &[u8], now: Instant) -> Vec<Incoming> {
        self.0.handle_input(bytes, now).into_iter().map(convert).collect()
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.0.poll_transmit(now)
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0.snapshot()).unwrap_or_default()
    }
}

fn convert(ev: RxEvent) -> Incoming {
    match ev {
        RxEvent::Text(t) => Incoming::Console(t),
        RxEvent::NewSession { previous, .. } => Incoming::NewSession { previous },
        RxEvent::Hello { session, payload } => Incoming::Hello { session, payload },
        RxEvent::Data { stream, offset, bytes } => Incoming::Data { stream, offset, bytes },
        RxEvent::StreamEnd { stream, len, sha256, verified } => {
            Incoming::StreamEnd { stream, len, sha256: crate::util::to_hex(&sha256), verified }
        }
        RxEvent::Rejected { reason, count } => Incoming::Rejected { reason: reason.to_string(), count },
    }
}

/// The protocol's receiver for `key`; with a saved `snapshot` it resumes, re-reading what
/// was already delivered of each stream through `prefix`.
pub fn open(
    key: Key,
    snapshot: Option<&[u8]>,
    prefix: impl FnMut(u32) -> std::io::Result<Box<dyn Read>>,
) -> anyhow::Result<Box<dyn Link>> {
    let receiver = match snapshot.and_then(|s| serde_json::from_slice::<Snapshot>(s).ok()) {
        Some(snap) => Receiver::restore(key, ReceiverConfig::default(), &snap, prefix).map_err(|e| {
            anyhow::anyhow!("cannot resume the earlier collection: {e}; pass --force to start over")
        })?,
        None => Receiver::new(key),
    };
    Ok(Box::new(Wire(receiver)))
}
