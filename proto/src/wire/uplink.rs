//! The agent's uplink thread: drives a [`Sender`] over a [`Transport`].
//!
//! The thread writes what the sender has to send, reads acknowledgements, and on a link
//! error reconnects (with backoff) and resumes. [`UplinkHandle::write`] blocks while the
//! stream's buffer is full, so producers run at line speed in constant memory.

use super::sender::{SendError, Sender, SenderConfig, SenderStats};
use super::{Key, Priority, StreamId, Transport};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct State {
    sender: Sender,
    stop: bool,
    /// The last link error, for messages.
    last_error: Option<String>,
    /// The thread ended (it only does when stopped, or after a panic).
    exited: bool,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    describe: String,
}

/// Cheap to clone; every clone talks to the same thread.
#[derive(Clone)]
pub struct UplinkHandle(Arc<Inner>);

pub struct Uplink;

impl Uplink {
    /// Start the thread with a sender configured for this transport.
    pub fn start(transport: Box<dyn Transport>, key: Key, hello_json: Vec<u8>) -> io::Result<UplinkHandle> {
        let cfg = SenderConfig::for_link(transport.is_two_way(), transport.nominal_rate());
        Uplink::spawn(transport, Sender::new(key, hello_json, cfg))
    }

    pub fn spawn(mut transport: Box<dyn Transport>, sender: Sender) -> io::Result<UplinkHandle> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State { sender, stop: false, last_error: None, exited: false }),
            cond: Condvar::new(),
            thread: Mutex::new(None),
            describe: transport.describe(),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new().name("uplink".into()).spawn(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pump(&worker, transport.as_mut())));
            let mut st = lock(&worker.state);
            if result.is_err() {
                st.last_error = Some("the uplink thread panicked".into());
            }
            st.exited = true;
            worker.cond.notify_all();
        })?;
        *inner.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(UplinkHandle(inner))
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pump(inner: &Inner, transport: &mut dyn Transport) {
    let two_way = transport.is_two_way();
    // Slow links get one frame per write so priorities and acks stay current.
    let batch = if transport.nominal_rate().is_some_and(|r| r <= 1_000_000) { 1 } else { 256 * 1024 };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Take in acks that are already waiting before deciding what to send: when this
        // thread was kept off the CPU (busy compression threads), frames whose acks sit in
        // the socket buffer must not time out and be resent.
        if two_way {
            match transport.read_timeout(&mut buf, Duration::ZERO) {
                Ok(0) => {}
                Ok(n) => {
                    let mut st = lock(&inner.state);
                    st.sender.handle_input(&buf[..n], Instant::now());
                    inner.cond.notify_all();
                }
                Err(e) => {
                    if !reconnect(inner, transport, e) {
                        return;
                    }
                    continue;
                }
            }
        }
        let mut out = Vec::new();
        let wait = {
            let mut st = lock(&inner.state);
            if st.stop {
                return;
            }
            let now = Instant::now();
            while out.len() < batch {
                match st.sender.poll_transmit(now) {
                    Some(frame) => out.extend_from_slice(&frame),
                    None => break,
                }
            }
            inner.cond.notify_all();
            let next = st.sender.poll_timeout().map(|t| t.saturating_duration_since(now));
            next.unwrap_or(Duration::from_millis(20))
                .clamp(Duration::from_millis(1), Duration::from_millis(20))
        };
        let mut result = Ok(());
        if !out.is_empty() {
            result = transport.write_all(&out);
        }
        if result.is_ok() && (two_way || out.is_empty()) {
            let timeout = if out.is_empty() { wait } else { Duration::from_millis(1) };
            result = match transport.read_timeout(&mut buf, timeout) {
                Ok(0) => Ok(()),
                Ok(n) => {
                    let mut st = lock(&inner.state);
                    st.sender.handle_input(&buf[..n], Instant::now());
                    inner.cond.notify_all();
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        if let Err(e) = result {
            if !reconnect(inner, transport, e) {
                return;
            }
        }
    }
}

/// Reconnect with backoff until it works or the uplink is stopped.
fn reconnect(inner: &Inner, transport: &mut dyn Transport, mut err: io::Error) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        {
            let mut st = lock(&inner.state);
            st.last_error = Some(format!("{}: {err}", transport.describe()));
            if st.stop {
                return false;
            }
        }
        match transport.reconnect() {
            Ok(()) => {
                let mut st = lock(&inner.state);
                st.sender.reset_link();
                st.last_error = None;
                return true;
            }
            Err(e) => err = e,
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn send_error(e: SendError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl UplinkHandle {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.0.state)
    }

    pub fn open(&self, stream: StreamId, prio: Priority) {
        self.state().sender.open(stream, prio);
    }

    /// Queue all of `data`, waiting while the stream's buffer is full.
    pub fn write(&self, stream: StreamId, mut data: &[u8]) -> io::Result<()> {
        let mut st = self.state();
        while !data.is_empty() {
            let n = st.sender.write(stream, data).map_err(send_error)?;
            data = &data[n..];
            if n == 0 {
                if st.exited || st.stop {
                    return Err(io::Error::other(format!("uplink over {} stopped", self.0.describe)));
                }
                st = self
                    .0
                    .cond
                    .wait_timeout(st, Duration::from_millis(100))
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        Ok(())
    }

    /// Queue what fits without waiting; returns how many bytes were taken (for producers
    /// that must never block, such as a log tee: they may drop or keep the rest).
    pub fn try_write(&self, stream: StreamId, data: &[u8]) -> io::Result<usize> {
        self.state().sender.write(stream, data).map_err(send_error)
    }

    /// An [`io::Write`] into `stream` (blocking like [`UplinkHandle::write`]).
    pub fn writer(&self, stream: StreamId) -> StreamWriter {
        StreamWriter { handle: self.clone(), stream }
    }

    pub fn close(&self, stream: StreamId) -> io::Result<()> {
        self.state().sender.close(stream).map_err(send_error)
    }

    /// Bytes of `stream` held until the host has them (at most the window).
    pub fn buffered(&self, stream: StreamId) -> usize {
        self.state().sender.buffered(stream)
    }

    pub fn stats(&self) -> SenderStats {
        self.state().sender.stats()
    }

    /// Close every open stream, wait until everything arrived (two-way) or was sent with
    /// its copies (one-way), then stop the thread. Fails after `timeout`.
    pub fn finish(&self, timeout: Duration) -> io::Result<SenderStats> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state();
        for s in st.sender.open_streams() {
            let _ = st.sender.close(s);
        }
        while !st.sender.is_done() && !st.exited {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .0
                .cond
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let done = st.sender.is_done();
        let stats = st.sender.stats();
        let why = st.last_error.clone();
        st.stop = true;
        drop(st);
        self.0.cond.notify_all();
        if let Some(t) = self.0.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        if done {
            Ok(stats)
        } else {
            let why = why.map(|w| format!(" (last error: {w})")).unwrap_or_default();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("uplink over {}: the host did not receive everything within {} s{why}; is `stagehand collect` running?", self.0.describe, timeout.as_secs()),
            ))
        }
    }
}

pub struct StreamWriter {
    handle: UplinkHandle,
    stream: StreamId,
}

impl io::Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle.write(self.stream, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
