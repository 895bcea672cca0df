//! A real-time serial line between two byte pipes: each direction is throttled to the line
//! rate (8N1: 10 bits a byte) and damaged by bit flips and dropped bytes, drawn from a
//! seeded RNG. Used for lrzsz (two processes) and for the agent's uplink (in-process).

use stagehand_proto::wire::linesim::Rng;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Faults of one direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Probability that a bit is flipped.
    pub ber: f64,
    /// Probability that a byte is lost.
    pub drop: f64,
}

impl Faults {
    pub fn describe(&self) -> String {
        match (self.ber > 0.0, self.drop > 0.0) {
            (false, false) => "clean".into(),
            (true, false) => format!("BER {:.0e}", self.ber),
            (false, true) => format!("byte drops {:.0e}", self.drop),
            (true, true) => format!("BER {:.0e} + drops {:.0e}", self.ber, self.drop),
        }
    }
}

/// Counts down to the next fault of probability `p` per trial (geometric gaps).
struct Countdown {
    p: f64,
    left: u64,
}

impl Countdown {
    fn new(p: f64, rng: &mut Rng) -> Countdown {
        let mut c = Countdown { p, left: 0 };
        c.left = c.draw(rng);
        c
    }
    fn draw(&self, rng: &mut Rng) -> u64 {
        if self.p <= 0.0 {
            return u64::MAX;
        }
        let u = rng.unit().max(1e-300);
        (u.ln() / (1.0 - self.p).ln()) as u64
    }
    /// Whether this trial is a fault.
    fn hit(&mut self, rng: &mut Rng) -> bool {
        if self.left == 0 {
            self.left = self.draw(rng);
            true
        } else {
            self.left -= 1;
            false
        }
    }
}

/// Bytes read from the source per step: small, so the line delay stays a few ms.
const CHUNK: usize = 64;

/// Statistics of one direction.
#[derive(Default, Debug, Clone, Copy)]
pub struct DirStats {
    pub bytes: u64,
    pub flipped: u64,
    pub dropped: u64,
}

/// One direction of the line: read from `src`, wait out the transmission time, damage,
/// write to `dst`. Ends at EOF of `src`, a write error, or `stop`.
pub fn spawn_direction(
    mut src: File,
    mut dst: File,
    rate: u64,
    faults: Faults,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<DirStats> {
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let mut bits = Countdown::new(faults.ber, &mut rng);
        let mut drops = Countdown::new(faults.drop, &mut rng);
        let mut stats = DirStats::default();
        let mut buf = [0u8; CHUNK];
        let mut line_free = Instant::now();
        let fd = src.as_raw_fd();
        while !stop.load(Ordering::Relaxed) {
            if !wait_readable(fd, Duration::from_millis(50)) {
                continue;
            }
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // The line clock runs on from where it was unless the line really went idle:
            // a late wake-up of this thread must not count as idle line time.
            let now = Instant::now();
            if now > line_free + Duration::from_millis(2) {
                line_free = now;
            }
            line_free += Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(d) = line_free.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if drops.hit(&mut rng) {
                    stats.dropped += 1;
                    continue;
                }
                let mut b = b;
                for bit in 0..8 {
                    if bits.hit(&mut rng) {
                        b ^= 1 << bit;
                        stats.flipped += 1;
                    }
                }
                out.push(b);
            }
            stats.bytes += n as u64;
            if dst.write_all(&out).is_err() {
                break;
            }
        }
        stats
    })
}

pub fn wait_readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0
}

/// A pipe whose buffer is one page, like a UART driver's: a writer blocks once the line
/// is a few KiB behind, as it would on a real serial port.
pub fn small_pipe() -> std::io::Result<(File, File)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_pipe_size(w.as_raw_fd());
    Ok((File::from(r), File::from(w)))
}

pub fn set_pipe_size(fd: i32) {
    // SAFETY: fcntl on a descriptor we own; failure only leaves the default size.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 4096) };
}
