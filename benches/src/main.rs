//! stagehand's benchmarks. Each subcommand prints its figures as lines starting with the
//! figure's name; `scripts/bench.sh` runs them all. No subcommand asserts a time: machines
//! are noisy, so every figure is compared with a peer measured in the same run.

mod packing;
mod relay;
mod serial;

use stagehand_agent::pack::GzipOptions;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: stagehand-bench COMMAND
  serial-sim [--size BYTES]                  stagehand on linesim's clock, every fault case
  serial-sysroot TREE                        gzip ratio of TREE x simulated goodput of its tarball
  serial-lrzsz CASE [--size B] [--limit S]   sz/rz on the real-time relay (CASE: clean, ber1e-5, ber1e-4, drop1e-4)
  serial-relay CASE [--size B] [--limit S]   the agent's uplink on the same relay
  network-inprocess TREE [--gzip [--level L] [--threads N]]  pack -> uplink -> loopback TCP -> receiver thread
  levels TREE [--limit BYTES]                deflate speed and size per level vs gzip -6, pigz -6
  first-frame [--runs N] -- CMD...           spawn CMD (env STAGEHAND_CHANNEL=tcp:127.0.0.1:PORT) until its first byte
  exit-time [--runs N] -- CMD...             spawn CMD until it exits (the baseline of first-frame)
  throttle IN OUT [--rate B/S]               append IN to OUT at the line rate";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("stagehand-bench: {e}");
        std::process::exit(1);
    }
}

/// `--name VALUE` from `args`, parsed.
fn opt<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> io::Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{name} needs a number"))),
    }
}

fn positional(args: &[String], i: usize) -> io::Result<&String> {
    args.get(i).ok_or_else(|| io::Error::other(USAGE))
}

fn after_dashes(args: &[String]) -> io::Result<Vec<String>> {
    let i = args.iter().position(|a| a == "--").ok_or_else(|| io::Error::other(USAGE))?;
    let cmd = args[i + 1..].to_vec();
    if cmd.is_empty() {
        return Err(io::Error::other(USAGE));
    }
    Ok(cmd)
}

fn run(args: &[String]) -> io::Result<()> {
    let Some(cmd) = args.first() else {
        return Err(io::Error::other(USAGE));
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "serial-sim" => {
            let size = opt(rest, "--size", 4usize << 20)?;
            let data = serial::random_bytes(size, 4);
            for c in ["clean", "ber1e-5", "ber1e-4", "drop1e-4"] {
                serial::sim("random", &data, serial::case(c).map_err(io::Error::other)?);
            }
        }
        "serial-sysroot" => {
            let tree = PathBuf::from(positional(rest, 0)?);
            let (_, tar) = packing::pack_tree(&tree, None)?;
            let t0 = Instant::now();
            let (content, gz) = packing::pack_tree(&tree, Some(GzipOptions { level: 6, threads: 0 }))?;
            let ratio = tar.len() as f64 / gz.len() as f64;
            println!(
                "serial-sysroot pack: content {} bytes, tar {} bytes, tar.gz (level 6) {} bytes in {:.1} s: tar/gz ratio {:.3}",
                content,
                tar.len(),
                gz.len(),
                t0.elapsed().as_secs_f64(),
                ratio
            );
            // The whole tarball would take hours of simulated line time; a 4 MiB piece of
            // it (its middle: real compressed bytes) gives the goodput.
            let piece = 4usize << 20;
            let start = gz.len().saturating_sub(piece) / 2;
            let slice = &gz[start..(start + piece).min(gz.len())];
            for c in ["clean", "ber1e-5", "ber1e-4"] {
                let f = serial::case(c).map_err(io::Error::other)?;
                let pct = serial::sim("sysroot.tar.gz piece", slice, f);
                let tree_rate = ratio * pct / 100.0 * serial::RATE as f64;
                println!(
                    "serial-sysroot {}: tree (tar) bytes per second = ratio {ratio:.3} x goodput {pct:.1}% x 11520 B/s = {tree_rate:.0} B/s = {:.2}x line capacity (target 3x)",
                    f.describe(),
                    tree_rate / serial::RATE as f64
                );
            }
        }
        "serial-lrzsz" | "serial-relay" => {
            let faults = serial::case(positional(rest, 0)?).map_err(io::Error::other)?;
            let size = opt(rest, "--size", 256usize << 10)?;
            let limit = Duration::from_secs(opt(rest, "--limit", 300u64)?);
            let seed = opt(rest, "--seed", 11u64)?;
            if cmd == "serial-lrzsz" {
                serial::lrzsz(size, faults, limit, seed)?;
            } else {
                serial::stagehand_relay(size, faults, limit, seed)?;
            }
        }
        "network-inprocess" => {
            let tree = PathBuf::from(positional(rest, 0)?);
            let threads = opt(rest, "--threads", 0usize)?;
            let level = opt(rest, "--level", 6u8)?;
            let gzip = rest.iter().any(|a| a == "--gzip").then_some(GzipOptions { level, threads });
            let out = std::env::temp_dir().join(format!("stagehand-bench-net-{}", std::process::id()));
            let r = packing::tcp_inprocess(&tree, gzip, &out);
            let _ = std::fs::remove_file(&out);
            r?;
        }
        "host" => {
            // A minimal host for the real agent: `host PORT KEYFILE`, prints when the file
            // stream (2) ended.
            let port: u16 = positional(rest, 0)?.parse().map_err(|_| io::Error::other("PORT"))?;
            let key = stagehand_proto::wire::Key::from_hex_file(std::path::Path::new(positional(rest, 1)?))?;
            let listener = TcpListener::bind(("127.0.0.1", port))?;
            let t0 = Instant::now();
            let out = std::env::temp_dir().join(format!("stagehand-bench-host-{}", std::process::id()));
            let r = packing::minimal_host(listener, key, 2, &out);
            let _ = std::fs::remove_file(&out);
            let (len, verified, busy, at) = r?;
            println!("host: stream 2 ended: {len} bytes, verified {verified}, {:.2} s after listening, busy {busy:.2} s", at.duration_since(t0).as_secs_f64());
        }
        "levels" => {
            let tree = PathBuf::from(positional(rest, 0)?);
            packing::levels(&tree, opt(rest, "--limit", 96usize << 20)?)?;
        }
        "first-frame" | "exit-time" => {
            let runs = opt(rest, "--runs", 11usize)?;
            let argv = after_dashes(rest)?;
            let mut times = Vec::new();
            for _ in 0..runs {
                times.push(if cmd == "first-frame" { first_frame(&argv)? } else { exit_time(&argv)? });
            }
            times.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{cmd}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} runs: {}",
                times[times.len() / 2] * 1e3,
                times[0] * 1e3,
                times[times.len() - 1] * 1e3,
                argv.join(" ")
            );
        }
        "throttle" => {
            let (input, output) = (positional(rest, 0)?, positional(rest, 1)?);
            let rate = opt(rest, "--rate", serial::RATE)?;
            throttle(input, output, rate)?;
        }
        _ => return Err(io::Error::other(USAGE)),
    }
    Ok(())
}

/// Seconds from spawning `argv` to the first byte on its TCP connection.
fn first_frame(argv: &[String]) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let t0 = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("STAGEHAND_CHANNEL", format!("tcp:127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let pgid = child.id() as i32;
    let kill = |child: &mut std::process::Child| {
        // SAFETY: signalling the process group this function created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    };
    let deadline = t0 + Duration::from_secs(10);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => {
                kill(&mut child);
                return Err(io::Error::other(format!("no connection from {}: {e}", argv.join(" "))));
            }
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut b = [0u8; 1];
    let r = conn.read(&mut b);
    let t = t0.elapsed().as_secs_f64();
    kill(&mut child);
    match r {
        Ok(1) => Ok(t),
        _ => Err(io::Error::other(format!("no byte from {}", argv.join(" ")))),
    }
}

fn exit_time(argv: &[String]) -> io::Result<f64> {
    let t0 = Instant::now();
    Command::new(&argv[0]).args(&argv[1..]).stdout(std::process::Stdio::null()).status()?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Append `input` to `output` at `rate` bytes per second (a serial line into a capture
/// file that `stagehand collect --input --follow` reads).
fn throttle(input: &str, output: &str, rate: u64) -> io::Result<()> {
    let data = std::fs::read(input)?;
    let mut out = std::fs::OpenOptions::new().append(true).create(true).open(output)?;
    let t0 = Instant::now();
    let step = (rate / 50).max(1) as usize;
    for (i, chunk) in data.chunks(step).enumerate() {
        let due = t0 + Duration::from_secs_f64(((i + 1) * step) as f64 / rate as f64);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        out.write_all(chunk)?;
    }
    println!("throttle: {} bytes in {:.1} s", data.len(), t0.elapsed().as_secs_f64());
    Ok(())
}
