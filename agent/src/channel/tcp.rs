//! A TCP connection out to the host (the agent never listens). Under QEMU's user-mode
//! network the first connect only succeeds a few seconds after the link is up, so
//! connecting retries with exponential backoff.

use super::wait_readable;
use crate::wire::Transport;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TcpTransport {
    host: String,
    port: u16,
    patience: Duration,
    stream: TcpStream,
}

fn connect_once(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, ATTEMPT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connect, retrying with backoff (100 ms doubling to 2 s) for at most `patience`.
fn connect_with_backoff(host: &str, port: u16, patience: Duration) -> io::Result<TcpStream> {
    let start = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match connect_once(host, port) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) if start.elapsed() + delay > patience => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot connect to tcp:{host}:{port} after {attempts} attempts in {} ms ({e}): \
                         is the host listening, and is the guest's network up?",
                        start.elapsed().as_millis() as u64
                    ),
                ))
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

impl TcpTransport {
    pub fn connect(host: &str, port: u16, patience: Duration) -> io::Result<TcpTransport> {
        let stream = connect_with_backoff(host, port, patience)?;
        Ok(TcpTransport { host: host.to_string(), port, patience, stream })
    }
}

impl Transport for TcpTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if buf.is_empty() || !wait_readable(&self.stream, timeout)? {
            return Ok(0);
        }
        match self.stream.read(buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} closed the connection", self.describe()),
            )),
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn is_two_way(&self) -> bool {
        true
    }

    fn reconnect(&mut self) -> io::Result<()> {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.stream = connect_with_backoff(&self.host, self.port, self.patience)?;
        Ok(())
    }

    fn nominal_rate(&self) -> Option<u64> {
        None
    }

    fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("tcp:[{}]:{}", self.host, self.port)
        } else {
            format!("tcp:{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn two_way_over_a_loopback_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut t = TcpTransport::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        assert!(t.stream.nodelay().unwrap());
        assert_eq!(t.stream.write_timeout().unwrap(), Some(WRITE_TIMEOUT));
        t.write_all(b"\x00hello\x00").unwrap();
        let mut got = [0u8; 7];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x00hello\x00");
        let mut buf = [0u8; 8];
        assert_eq!(t.read_timeout(&mut buf, Duration::from_millis(20)).unwrap(), 0);
        peer.write_all(b"ack").unwrap();
        assert_eq!(t.read_timeout(&mut buf, Duration::from_secs(2)).unwrap(), 3);
        assert_eq!(&buf[..3], b"ack");
        drop(peer);
        let e = t.read_timeout(&mut buf, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // The host comes back: reconnect.
        t.reconnect().unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        t.write_all(b"again").unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"again");
        assert_eq!(t.describe(), format!("tcp:127.0.0.1:{port}"));
    }

    #[test]
    fn connect_retries_until_the_host_listens() {
        // Reserve a port, free it, and only listen on it a little later.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            l.accept().map(|_| ())
        });
        let start = Instant::now();
        let t = TcpTransport::connect("127.0.0.1", port, Duration::from_secs(10));
        assert!(t.is_ok(), "{:?}", t.err());
        assert!(start.elapsed() >= Duration::from_millis(300));
        server.join().unwrap().unwrap();
    }

    #[test]
    fn giving_up_names_the_address() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = TcpTransport::connect("127.0.0.1", port, Duration::from_millis(250)).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains(&format!("tcp:127.0.0.1:{port}")) && msg.contains("attempts"), "{msg}");
    }
}
