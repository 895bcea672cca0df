//! Links that carry the uplink protocol: implementations of [`crate::wire::Transport`].
//!
//! - [`serial`]: a serial line (`serial:`), or the console shared with the kernel
//!   (`console`);
//! - [`tcp`]: a TCP connection out to the host, retried with backoff;
//! - [`file`]: a local file, appended to (one-way; e.g. on an NFS root).
//!
//! The agent only ever connects out or writes: it never listens on the network.

pub mod file;
pub mod serial;
pub mod tcp;

pub use stagehand_proto::channel::{ChannelSpec, Flow};

use crate::wire::Transport;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

/// How long [`open`] keeps retrying a TCP connection before it gives up.
pub const TCP_PATIENCE: Duration = Duration::from_secs(120);

/// Open the link described by `spec`.
pub fn open(spec: &ChannelSpec) -> io::Result<Box<dyn Transport>> {
    Ok(match spec {
        ChannelSpec::Serial { device, baud, flow, one_way } => {
            Box::new(serial::TtyTransport::open_serial(device, *baud, *flow, *one_way)?)
        }
        ChannelSpec::Console { device, one_way } => {
            Box::new(serial::TtyTransport::open_console(device, *one_way)?)
        }
        ChannelSpec::Tcp { host, port } => Box::new(tcp::TcpTransport::connect(host, *port, TCP_PATIENCE)?),
        ChannelSpec::File { path } => Box::new(file::FileTransport::open(path)?),
    })
}

/// Wait until `fd` is readable, at most `timeout`. `Ok(false)` on timeout.
pub(crate) fn wait_readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let ts = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dispatches_on_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let spec: ChannelSpec = format!("file:{}/up.bin", dir.path().display()).parse().unwrap();
        let mut t = open(&spec).unwrap();
        assert_eq!(t.describe(), spec.to_string());
        t.write_all(b"x").unwrap();
        let e = open(&"serial:/dev/null,9600".parse().unwrap()).err().unwrap();
        assert!(e.to_string().contains("not a serial device"), "{e}");
    }
}
