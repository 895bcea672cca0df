//! The thin layer over the protocol's receiver: bytes in, [`Incoming`] items out.
//! Everything after it (demux, files, report) knows nothing of frames.

use std::time::Instant;

/// What the receiver makes of the bytes on the link.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// Bytes between frames: the board's console (kernel messages, a shell).
    Console(Vec<u8>),
    /// An agent announced a session (its hello payload is JSON of `events::Hello`).
    Hello { session: u64, payload: Vec<u8> },
    /// Bytes of a stream, in order, exactly once.
    Data { stream: u32, offset: u64, bytes: Vec<u8> },
    /// A stream ended: its length and sha256 (hex), `verified` when every frame's HMAC
    /// checked and the digest matches what was received.
    StreamEnd { stream: u32, len: u64, sha256: String, verified: bool },
    /// A frame that failed its check (noise, wrong key, tampering).
    Rejected { reason: String },
    /// A new session began (the agent restarted without a resumable state).
    NewSession,
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
pub fn read_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read key {}: {e}", path.display()))?;
    let hex = text.trim();
    let bad = || anyhow::anyhow!("{} is not a stagehand key (64 hex digits expected)", path.display());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// The protocol's receiver for `key`, restored from `snapshot` when given.
pub fn open(key: [u8; 32], snapshot: Option<&[u8]>) -> anyhow::Result<Box<dyn Link>> {
    let _ = (key, snapshot);
    anyhow::bail!("this build of stagehand has no protocol receiver yet")
}
