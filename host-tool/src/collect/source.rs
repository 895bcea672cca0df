//! Where the bytes come from: a serial line, TCP connections, or a file.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub enum Got {
    Bytes(usize),
    /// Nothing arrived within the timeout.
    Idle,
    /// The input is over for good (a file without --follow).
    End,
    /// The link dropped; the agent may come back (a TCP reconnect).
    Dropped,
}

pub trait Source {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Got>;
    /// Send bytes back to the agent; links that cannot answer ignore them.
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    fn describe(&self) -> String;
}

fn wait_readable(fd: impl AsFd, timeout: Duration) -> Result<bool> {
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts =
        rustix::time::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as i64 };
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A file, e.g. what QEMU wrote with `-serial file:PATH`.
pub struct FileSource {
    path: PathBuf,
    file: std::fs::File,
    follow: bool,
}

impl FileSource {
    pub fn open(path: &Path, follow: bool) -> Result<FileSource> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(FileSource { path: path.into(), file, follow })
    }
}

impl Source for FileSource {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Got> {
        let n = self.file.read(buf)?;
        if n > 0 {
            return Ok(Got::Bytes(n));
        }
        if !self.follow {
            return Ok(Got::End);
        }
        std::thread::sleep(timeout.min(Duration::from_millis(200)));
        Ok(Got::Idle)
    }
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// Bits for `c_cflag` for the usual rates (set directly: no cfsetspeed).
fn baud_bits(baud: u32) -> Option<libc::tcflag_t> {
    Some(match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        576000 => libc::B576000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1500000 => libc::B1500000,
        2000000 => libc::B2000000,
        3000000 => libc::B3000000,
        4000000 => libc::B4000000,
        _ => return None,
    })
}

/// A serial line in raw mode.
pub struct SerialSource {
    path: PathBuf,
    file: std::fs::File,
    baud: u32,
}

impl SerialSource {
    pub fn open(path: &Path, baud: u32) -> Result<SerialSource> {
        let bits = baud_bits(baud)
            .with_context(|| format!("unsupported baud rate {baud} (use 9600 ... 4000000)"))?;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if !rustix::termios::isatty(&file) {
            anyhow::bail!("{} is not a serial device", path.display());
        }
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fd is an open terminal owned by `file` for the duration of these calls.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                anyhow::bail!("{} is not a serial device", path.display());
            }
            libc::cfmakeraw(&mut t);
            t.c_cflag &= !(libc::CBAUD | libc::CRTSCTS | libc::CSTOPB);
            t.c_cflag |= bits | libc::CLOCAL | libc::CREAD | libc::CS8;
            t.c_cc[libc::VMIN] = 0;
            t.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                anyhow::bail!(
                    "cannot set {} to raw mode at {baud} baud: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(SerialSource { path: path.into(), file, baud })
    }
}

impl Source for SerialSource {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Got> {
        if !wait_readable(&self.file, timeout)? {
            return Ok(Got::Idle);
        }
        match self.file.read(buf) {
            Ok(0) => Ok(Got::Idle),
            Ok(n) => Ok(Got::Bytes(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Got::Idle),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("serial {} at {} baud", self.path.display(), self.baud)
    }
}

/// A TCP listener; the agent connects (and reconnects after a drop).
pub struct ListenSource {
    listener: std::net::TcpListener,
    conn: Option<std::net::TcpStream>,
}

impl ListenSource {
    pub fn bind(addr: &str) -> Result<ListenSource> {
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        Ok(ListenSource { listener, conn: None })
    }
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }
}

impl Source for ListenSource {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Got> {
        let Some(conn) = self.conn.as_mut() else {
            if !wait_readable(&self.listener, timeout)? {
                return Ok(Got::Idle);
            }
            let (stream, _) = self.listener.accept()?;
            stream.set_nodelay(true).ok();
            self.conn = Some(stream);
            return Ok(Got::Idle);
        };
        if !wait_readable(&*conn, timeout)? {
            return Ok(Got::Idle);
        }
        match conn.read(buf) {
            Ok(0) | Err(_) => {
                self.conn = None;
                Ok(Got::Dropped)
            }
            Ok(n) => Ok(Got::Bytes(n)),
        }
    }
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(c) = self.conn.as_mut() {
            if c.write_all(bytes).is_err() {
                self.conn = None;
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        match self.local_addr() {
            Some(a) => format!("TCP listener on {a}"),
            None => "TCP listener".into(),
        }
    }
}

/// The host end of a QEMU chardev socket (`-chardev socket,server=on`): connected once
/// QEMU is listening; the end of the connection means QEMU has gone.
pub struct UnixClientSource {
    path: PathBuf,
    conn: std::os::unix::net::UnixStream,
}

impl UnixClientSource {
    /// Connect, retrying while QEMU starts up, for at most `wait`.
    pub fn connect(path: &Path, wait: Duration) -> Result<UnixClientSource> {
        let start = std::time::Instant::now();
        loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(conn) => return Ok(UnixClientSource { path: path.into(), conn }),
                Err(e) if start.elapsed() < wait => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot connect to QEMU's channel socket {}", path.display())
                    })
                }
            }
        }
    }
}

impl Source for UnixClientSource {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Got> {
        if !wait_readable(&self.conn, timeout)? {
            return Ok(Got::Idle);
        }
        match self.conn.read(buf) {
            Ok(0) => Ok(Got::End),
            Ok(n) => Ok(Got::Bytes(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Got::Idle),
            Err(_) => Ok(Got::End),
        }
    }
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let _ = self.conn.write_all(bytes);
        Ok(())
    }
    fn describe(&self) -> String {
        format!("QEMU socket {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_not_a_serial_device() {
        let err = SerialSource::open(Path::new("/dev/null"), 115200).err().unwrap();
        assert_eq!(err.to_string(), "/dev/null is not a serial device");
    }

    #[test]
    fn odd_baud_rates_are_refused() {
        assert!(SerialSource::open(Path::new("/dev/null"), 12345).is_err());
    }

    #[test]
    fn listener_survives_a_reconnect() {
        let mut src = ListenSource::bind("127.0.0.1:0").unwrap();
        let addr = src.local_addr().unwrap();
        let mut buf = [0u8; 16];
        for round in 0..2u8 {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(&[round; 3]).unwrap();
            let mut got = Vec::new();
            for _ in 0..50 {
                if let Got::Bytes(n) = src.read(&mut buf, Duration::from_millis(100)).unwrap() {
                    got.extend_from_slice(&buf[..n]);
                }
                if got.len() == 3 {
                    break;
                }
            }
            assert_eq!(got, vec![round; 3]);
            drop(c);
            let mut dropped = false;
            for _ in 0..20 {
                if let Got::Dropped = src.read(&mut buf, Duration::from_millis(100)).unwrap() {
                    dropped = true;
                    break;
                }
            }
            assert!(dropped);
        }
    }
}
