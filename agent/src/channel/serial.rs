//! Serial lines and the console: a tty in raw mode (no `\n` -> `\r\n`, no echo).
//!
//! The baud rate goes through rustix's termios, which uses the `TCSETS2` ioctl with
//! `BOTHER` on Linux: any rate, and no `cfsetspeed` (which does not link in static glibc).
//! The console keeps its speed (the kernel set it from `console=`); its settings are
//! restored when the transport is dropped, so a shell afterwards behaves.

use super::{wait_readable, Flow};
use crate::wire::Transport;
use rustix::termios::{self, ControlModes, OptionalActions, SpecialCodeIndex, Termios};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

pub struct TtyTransport {
    file: File,
    describe: String,
    baud: Option<u32>,
    two_way: bool,
    original: Option<Termios>,
}

fn open_rw(device: &Path) -> io::Result<File> {
    open_rw_errno(device).map_err(|e| {
        io::Error::new(io::Error::from(e).kind(), format!("cannot open {}: {e}", device.display()))
    })?
}

fn open_rw_errno(device: &Path) -> Result<io::Result<File>, rustix::io::Errno> {
    use rustix::fs::{open, Mode, OFlags};
    let fd = open(device, OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    Ok(finish_open(fd))
}

fn finish_open(fd: std::os::fd::OwnedFd) -> io::Result<File> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    // Non-blocking only for the open itself (a modem line without carrier would block).
    let flags = fcntl_getfl(&fd)?;
    fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
    Ok(File::from(fd))
}

/// A device node under /dev can appear a moment after its driver is loaded (a virtio-serial
/// port after virtio_console, a USB serial adapter), and open with ENXIO until the driver
/// has finished setting it up: wait for it a little.
const DEVICE_PATIENCE: Duration = Duration::from_secs(10);

fn open_rw_waiting(device: &Path) -> io::Result<File> {
    use rustix::io::Errno;
    let start = std::time::Instant::now();
    loop {
        match open_rw_errno(device) {
            Err(Errno::NOENT | Errno::NXIO | Errno::NODEV)
                if device.starts_with("/dev") && start.elapsed() < DEVICE_PATIENCE =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot open {}: {e}", device.display()),
                ))
            }
            Ok(file) => return file,
        }
    }
}

/// A virtio-serial port (`/dev/vportNpM`): a two-way byte pipe, not a tty.
fn is_virtio_port(device: &Path) -> bool {
    let real = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    real.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with("vport") && Path::new("/sys/class/virtio-ports").join(&*n).exists()
    })
}

fn not_a_tty(device: &Path, e: rustix::io::Errno) -> io::Error {
    let name = if e == rustix::io::Errno::NOTTY { "ENOTTY".to_string() } else { e.to_string() };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a serial device (tcgetattr: {name})", device.display()),
    )
}

impl TtyTransport {
    /// Open `device` as a serial line: raw, 8N1, `baud`, the given flow control.
    pub fn open_serial(device: &Path, baud: u32, flow: Flow, one_way: bool) -> io::Result<TtyTransport> {
        let file = open_rw_waiting(device)?;
        let original = match termios::tcgetattr(&file) {
            Ok(t) => t,
            Err(rustix::io::Errno::NOTTY) if is_virtio_port(device) => {
                // No line settings to make: bytes pass as they are, both ways.
                return Ok(TtyTransport {
                    file,
                    describe: format!("serial:{} (virtio port)", device.display()),
                    baud: None,
                    two_way: !one_way,
                    original: None,
                });
            }
            Err(e) => return Err(not_a_tty(device, e)),
        };
        let mut t = original.clone();
        t.make_raw();
        t.control_modes -=
            ControlModes::CSIZE | ControlModes::CSTOPB | ControlModes::PARENB | ControlModes::CRTSCTS;
        t.control_modes |= ControlModes::CS8 | ControlModes::CREAD | ControlModes::CLOCAL;
        if flow == Flow::RtsCts {
            t.control_modes |= ControlModes::CRTSCTS;
        }
        t.special_codes[SpecialCodeIndex::VMIN] = 1;
        t.special_codes[SpecialCodeIndex::VTIME] = 0;
        t.set_speed(baud).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: baud rate {baud} not supported: {e}", device.display()),
            )
        })?;
        termios::tcsetattr(&file, OptionalActions::Now, &t).map_err(|e| {
            io::Error::other(format!("{}: setting {baud} baud, raw mode: {e}", device.display()))
        })?;
        let _ = termios::tcflush(&file, termios::QueueSelector::IFlush);
        let mut describe = format!("serial:{},{baud}", device.display());
        if flow == Flow::RtsCts {
            describe.push_str(",flow=rtscts");
        }
        Ok(TtyTransport { file, describe, baud: Some(baud), two_way: !one_way, original: Some(original) })
    }

    /// Share the console (`/dev/console` or the named tty): raw mode, speed untouched.
    /// A console that is not a tty (a plain file or pipe) is written to as it is.
    pub fn open_console(device: &Path, one_way: bool) -> io::Result<TtyTransport> {
        let file = open_rw(device)?;
        let original = termios::tcgetattr(&file).ok();
        if let Some(orig) = &original {
            let mut t = orig.clone();
            t.make_raw();
            t.control_modes |= ControlModes::CREAD | ControlModes::CLOCAL;
            t.special_codes[SpecialCodeIndex::VMIN] = 1;
            t.special_codes[SpecialCodeIndex::VTIME] = 0;
            termios::tcsetattr(&file, OptionalActions::Now, &t)
                .map_err(|e| io::Error::other(format!("{}: raw mode: {e}", device.display())))?;
        }
        Ok(TtyTransport {
            file,
            describe: format!("console:{}", device.display()),
            baud: None,
            two_way: !one_way && original.is_some(),
            original,
        })
    }
}

impl Transport for TtyTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if !self.two_way {
            std::thread::sleep(timeout);
            return Ok(0);
        }
        if buf.is_empty() || !wait_readable(&self.file, timeout)? {
            return Ok(0);
        }
        match self.file.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn is_two_way(&self) -> bool {
        self.two_way
    }

    fn reconnect(&mut self) -> io::Result<()> {
        // A tty does not go away; the line is the same after an error.
        Ok(())
    }

    fn nominal_rate(&self) -> Option<u64> {
        self.baud.map(|b| b as u64 / 10)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

impl Drop for TtyTransport {
    fn drop(&mut self) {
        let _ = termios::tcdrain(&self.file);
        if let Some(orig) = &self.original {
            let _ = termios::tcsetattr(&self.file, OptionalActions::Now, orig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// A pty pair: (master, path of the slave).
    fn pty() -> (File, std::path::PathBuf) {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two fds; name/termios/winsize may be null.
        let rc = unsafe {
            libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
        };
        assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
        // SAFETY: both fds were just returned by openpty and are owned here.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let path =
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&slave))).unwrap();
        std::mem::forget(slave); // keep the slave open so the line stays up
        (File::from(master), path)
    }

    #[test]
    fn serial_over_a_pty_carries_bytes_both_ways_untranslated() {
        let (mut master, slave) = pty();
        let mut t = TtyTransport::open_serial(&slave, 115_200, Flow::RtsCts, false).unwrap();
        assert_eq!(t.nominal_rate(), Some(11_520));
        assert!(t.is_two_way());
        assert!(t.describe().ends_with(",115200,flow=rtscts"));
        let frame = b"\x00ab\ncd\r\x00\xff";
        t.write_all(frame).unwrap();
        let mut got = vec![0u8; frame.len()];
        master.read_exact(&mut got).unwrap();
        assert_eq!(got, frame, "raw mode: no \\n -> \\r\\n");

        let mut buf = [0u8; 16];
        assert_eq!(t.read_timeout(&mut buf, Duration::from_millis(30)).unwrap(), 0);
        master.write_all(b"ack\n\x00").unwrap();
        let mut total = Vec::new();
        while total.len() < 5 {
            let n = t.read_timeout(&mut buf, Duration::from_secs(2)).unwrap();
            assert!(n > 0, "nothing came back through the pty");
            total.extend_from_slice(&buf[..n]);
        }
        assert_eq!(total, b"ack\n\x00");
        let term = termios::tcgetattr(&t.file).unwrap();
        assert_eq!(term.output_speed(), 115_200);
    }

    #[test]
    fn odd_baud_rates_are_set_through_termios2() {
        let (_master, slave) = pty();
        let t = TtyTransport::open_serial(&slave, 250_000, Flow::None, true).unwrap();
        assert!(!t.is_two_way());
        assert_eq!(termios::tcgetattr(&t.file).unwrap().output_speed(), 250_000);
    }

    #[test]
    fn a_file_that_is_not_a_tty_is_refused_clearly() {
        let e = TtyTransport::open_serial(Path::new("/dev/null"), 115_200, Flow::None, false).err().unwrap();
        assert_eq!(e.to_string(), "/dev/null is not a serial device (tcgetattr: ENOTTY)");
        let e = TtyTransport::open_serial(Path::new("/nonexistent/ttyS9"), 115_200, Flow::None, false)
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot open /nonexistent/ttyS9"), "{e}");
    }

    #[test]
    fn console_on_a_pty_is_raw_and_keeps_its_speed() {
        let (mut master, slave) = pty();
        let before = termios::tcgetattr(File::open(&slave).unwrap()).unwrap().output_speed();
        {
            let mut t = TtyTransport::open_console(&slave, false).unwrap();
            assert!(t.is_two_way());
            assert_eq!(t.nominal_rate(), None);
            t.write_all(b"a\nb").unwrap();
            let mut got = [0u8; 3];
            master.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"a\nb");
            assert_eq!(termios::tcgetattr(&t.file).unwrap().output_speed(), before);
        }
        // Dropped: cooked mode is back (output processing on).
        let after = termios::tcgetattr(File::open(&slave).unwrap()).unwrap();
        assert!(after.output_modes.contains(termios::OutputModes::OPOST));
    }

    #[test]
    fn a_console_that_is_a_plain_file_is_one_way() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.out");
        std::fs::write(&p, b"").unwrap();
        let mut t = TtyTransport::open_console(&p, false).unwrap();
        assert!(!t.is_two_way());
        t.write_all(b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }
}
