use std::io;
use std::time::Duration;

/// A byte link from the agent to the host: a serial line, a TCP connection, a file.
///
/// Implementations live in [`crate::channel`]; the uplink thread owns one.
pub trait Transport: Send {
    /// Write every byte or fail.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Read what the host sent, waiting at most `timeout`; `Ok(0)` when nothing came.
    /// One-way transports wait out the timeout and return `Ok(0)`.
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    /// Whether the host can answer on this link (acknowledgements, resume).
    fn is_two_way(&self) -> bool;
    /// Re-establish the link after an error (TCP: reconnect with backoff). Links that
    /// cannot be re-established return the error.
    fn reconnect(&mut self) -> io::Result<()>;
    /// Nominal capacity in bytes per second when known (a serial line's baud / 10), used to
    /// pick the first frame size and the heartbeat interval.
    fn nominal_rate(&self) -> Option<u64>;
    /// For messages: `serial:/dev/ttyS1,115200`, `tcp:10.0.2.2:7000`, `file:/out/x`.
    fn describe(&self) -> String;
}
