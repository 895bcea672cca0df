//! The uplink protocol: authenticated, self-synchronising frames over any byte stream.
//!
//! Specified byte by byte in `docs/protocol.md`. Layers, bottom up:
//! - [`cobs`]: byte stuffing so that `0x00` only ever delimits frames;
//! - [`frame`]: frame layout, CRC, HMAC; [`frame::Decoder`] splits a noisy byte stream
//!   into console text, good frames and rejected frames;
//! - [`sender`] / [`receiver`]: sans-IO state machines that move ordered byte streams
//!   (stream id + offset) reliably: acknowledgements, retransmission, resume, repetition
//!   on one-way links, frame size adapted to the observed error rate;
//! - [`uplink`]: the agent's thread that drives a [`sender::Sender`] over a [`Transport`];
//! - [`linesim`]: a simulated serial line (baud rate, faults) for tests and benchmarks.
//!
//! Nothing here knows what the streams mean: see [`crate::events`].
//!
//! How the rest of the project uses it:
//! - agent: `Uplink::start(transport, key, hello_json)` (or [`uplink::Uplink::spawn`] with
//!   a configured [`sender::Sender`]) gives an [`uplink::UplinkHandle`]: `open(stream,
//!   priority)`, `write` / `writer(stream)` (block while the window is full: constant
//!   memory), `try_write` (never blocks), `close(stream)` (end record with length and
//!   sha256), `finish(timeout)` (everything arrived, or sent with its copies on one-way
//!   links). The thread reconnects on errors and never panics out.
//! - host: [`receiver::Receiver`]: `handle_input(bytes, now)` gives [`receiver::RxEvent`]s
//!   (console text, hello, in-order stream data exactly once, verified stream ends,
//!   rejections with a reason such as "wrong --key?"); on two-way links send what
//!   `poll_transmit(now)` returns; persist `snapshot()` and `restore` it after a restart.
//! - key: [`Key::generate`], [`Key::to_hex`], [`Key::from_hex_file`].
//! - tests and benchmarks: [`linesim::simulate`] runs a sender against a receiver on a
//!   simulated line (rate, bit errors, drops, bursts, silences, console text, reconnects)
//!   in simulated time; [`linesim::pipe`] is a real-time [`Transport`] pair.

pub mod auth;
pub mod cobs;
pub mod frame;
#[cfg(feature = "linesim")]
pub mod linesim;
pub mod receiver;
pub mod sender;
mod transport;
pub mod uplink;

pub use auth::Key;
pub use transport::Transport;

/// Ordered byte stream inside one session.
pub type StreamId = u32;
/// JSON lines of [`crate::events::Event`].
pub const EVENTS_STREAM: StreamId = 0;
/// The agent's own log.
pub const AGENT_LOG_STREAM: StreamId = 1;
/// First id the agent hands out for module logs and files.
pub const FIRST_DYNAMIC_STREAM: StreamId = 2;

/// Which streams go first when the line is the bottleneck.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Events: small, always first.
    Control,
    /// Logs: shown live, but never starve the file.
    Log,
    /// Bulk file data.
    Bulk,
}
