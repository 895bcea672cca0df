//! The agent's packer on a real tree: compression ratio and deflate speed per level.

use stagehand_agent::pack::gzip::ParallelGzip;
use stagehand_agent::pack::{self, GzipOptions, PackOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Pack `root` in memory; returns (content bytes, archive bytes, archive).
pub fn pack_tree(root: &Path, gzip: Option<GzipOptions>) -> io::Result<(u64, Vec<u8>)> {
    let mut opts = PackOptions::new(root);
    opts.gzip = gzip;
    let mut out = Vec::new();
    let rep = pack::pack(&opts, &mut out, &mut |_, _| {}).map_err(|e| io::Error::other(e.0))?;
    Ok((rep.tree_bytes, out))
}

/// Deflate speed and size of the agent's gzip (1 thread) per level, against GNU gzip and
/// pigz -p1 on the same bytes (the first `limit` bytes of the tree's tar).
pub fn levels(root: &Path, limit: usize) -> io::Result<()> {
    let (_, mut tar) = pack_tree(root, None)?;
    tar.truncate(limit);
    let mb = tar.len() as f64 / 1e6;
    println!("deflate-levels: input {:.1} MB (the first bytes of the tree's tar), 1 thread each", mb);
    let tool = |name: &str, args: &[&str]| -> io::Result<()> {
        let t0 = Instant::now();
        let mut child = Command::new(name).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let input = tar.clone();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let mut out = Vec::new();
        child.stdout.take().expect("piped").read_to_end(&mut out)?;
        child.wait()?;
        let _ = feeder.join();
        let s = t0.elapsed().as_secs_f64();
        println!(
            "deflate-levels {name} {}: {:.1} MB/s, {} bytes ({:.2}% of input)",
            args.join(" "),
            mb / s,
            out.len(),
            100.0 * out.len() as f64 / tar.len() as f64
        );
        Ok(())
    };
    tool("gzip", &["-6", "-c"])?;
    tool("pigz", &["-6", "-p", "1", "-c"])?;
    for level in [1u8, 2, 3, 4, 5, 6] {
        let t0 = Instant::now();
        let mut g = ParallelGzip::new(Vec::new(), level, 1);
        g.write_all(&tar)?;
        let out = g.finish()?;
        let s = t0.elapsed().as_secs_f64();
        println!(
            "deflate-levels agent level {level}: {:.1} MB/s, {} bytes ({:.2}% of input)",
            mb / s,
            out.len(),
            100.0 * out.len() as f64 / tar.len() as f64
        );
    }
    Ok(())
}

/// The agent's pack → uplink over a real loopback TCP socket → the host's receiver in
/// another thread, writing the file. No namespaces, no collect UI: the protocol path alone.
pub fn tcp_inprocess(root: &Path, gzip: Option<GzipOptions>, out: &Path) -> io::Result<()> {
    use stagehand_agent::channel::tcp::TcpTransport;
    use stagehand_proto::wire::uplink::Uplink;
    use stagehand_proto::wire::{Key, Priority};
    use std::net::TcpListener;
    use std::time::Duration;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let key = Key([5; 32]);
    let out_path = out.to_path_buf();
    let host_key = key.clone();
    let host = std::thread::spawn(move || minimal_host(listener, host_key, 2, &out_path));
    let t0 = Instant::now();
    let transport = TcpTransport::connect("127.0.0.1", port, Duration::from_secs(5))?;
    let uplink = Uplink::start(Box::new(transport), key, b"{}".to_vec())?;
    uplink.open(2, Priority::Bulk);
    let mut opts = PackOptions::new(root);
    opts.gzip = gzip.clone();
    let mut w = uplink.writer(2);
    let rep = pack::pack(&opts, &mut w, &mut |_, _| {}).map_err(|e| io::Error::other(e.0))?;
    uplink.close(2)?;
    let packed = t0.elapsed().as_secs_f64();
    let stats = uplink.finish(Duration::from_secs(120))?;
    drop(uplink);
    let (len, verified, busy, ended) =
        host.join().map_err(|_| io::Error::other("host thread panicked"))??;
    println!(
        "network-inprocess {}: {} bytes in {:.2} s (packed in {:.2} s), verified {verified}, host busy {:.2} s, frames {}, retransmitted {}, last frame size {}",
        match &gzip {
            None => "none".to_string(),
            Some(g) => format!("gzip{}-threads{}", g.level, g.threads),
        },
        len,
        ended.duration_since(t0).as_secs_f64(),
        packed,
        busy,
        stats.data_frames_sent,
        stats.retransmitted,
        stats.frame_size
    );
    let _ = rep;
    Ok(())
}

/// The host side without the collect UI: follows `stream` into `out`, acks at once after
/// every read; serves until the agent hangs up. (len, verified, busy seconds, end time).
pub fn minimal_host(
    listener: std::net::TcpListener,
    host_key: stagehand_proto::wire::Key,
    stream: u32,
    out_path: &Path,
) -> io::Result<(u64, bool, f64, Instant)> {
    use stagehand_proto::wire::receiver::{Receiver, RxEvent};
    use std::time::Duration;
    let (mut conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(Duration::from_millis(5)))?;
    let mut file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out_path)?);
    let mut rx = Receiver::new(host_key);
    let mut buf = vec![0u8; 256 * 1024];
    let mut busy = 0.0;
    let mut ended = None;
    // Serve until the agent hangs up: it needs the acks of its last frames.
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => 0,
            Err(_) => break,
        };
        let t = Instant::now();
        for ev in rx.handle_input(&buf[..n], Instant::now()) {
            match ev {
                RxEvent::Data { stream: s, bytes, .. } if s == stream => file.write_all(&bytes)?,
                RxEvent::StreamEnd { stream: s, len, verified, .. } if s == stream => {
                    file.flush()?;
                    ended = Some((len, verified, Instant::now()));
                }
                _ => {}
            }
        }
        while let Some(ack) = rx.poll_transmit(Instant::now()) {
            if conn.write_all(&ack).is_err() {
                break;
            }
        }
        busy += t.elapsed().as_secs_f64();
    }
    let (len, verified, at) = ended.ok_or_else(|| io::Error::other("the stream did not end"))?;
    Ok((len, verified, busy, at))
}
