//! Figure 1: a 115200-baud 8N1 line (11 520 B/s) with faults in both directions.
//! - `sim`: stagehand's sender and receiver on linesim's simulated clock (4 MiB).
//! - `lrzsz`: `sz` and `rz` as real processes on the real-time relay.
//! - `relay`: stagehand's threaded uplink and the host receiver on the same relay.

use crate::relay::{self, Faults};
use stagehand_proto::wire::linesim::{self, LineConfig, Rng};
use stagehand_proto::wire::receiver::{Receiver, RxEvent};
use stagehand_proto::wire::sender::{Sender, SenderConfig};
use stagehand_proto::wire::uplink::Uplink;
use stagehand_proto::wire::{Key, Priority, Transport};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const RATE: u64 = 11_520;

/// The fault cases of the figure, by name.
pub fn case(name: &str) -> Result<Faults, String> {
    Ok(match name {
        "clean" => Faults::default(),
        "ber1e-5" => Faults { ber: 1e-5, drop: 0.0 },
        "ber1e-4" => Faults { ber: 1e-4, drop: 0.0 },
        "drop1e-4" => Faults { ber: 0.0, drop: 1e-4 },
        _ => return Err(format!("unknown fault case {name:?} (clean, ber1e-5, ber1e-4, drop1e-4)")),
    })
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

/// Simulated clock: `data` over the line with `faults` both ways.
/// Prints the result; returns the goodput in percent of the line (0 when incomplete).
pub fn sim(label: &str, data: &[u8], faults: Faults) -> f64 {
    let mut line = LineConfig::serial(115_200);
    line.up.ber = faults.ber;
    line.down.ber = faults.ber;
    line.up.drop_byte = faults.drop;
    line.down.drop_byte = faults.drop;
    line.seed = 42;
    line.time_limit = 4.0 * 3600.0;
    let key = Key([7; 32]);
    let cfg = SenderConfig::for_link(true, Some(RATE));
    let mut sender = Sender::new(key.clone(), b"{}".to_vec(), cfg);
    let mut receiver = Receiver::new(key);
    let t0 = Instant::now();
    let r = linesim::simulate(&mut sender, &mut receiver, &vec![(2, Priority::Bulk, data.to_vec())], &line);
    println!(
        "serial-sim {label} {}: {} bytes in {:.1} simulated s: goodput {:.1}% of 11520 B/s, complete+byte-exact {}, frame size reached {} B, retransmitted {} frames (computed in {:.1} s)",
        faults.describe(),
        data.len(),
        r.elapsed,
        r.goodput_pct,
        r.complete,
        r.sender.frame_size,
        r.sender.retransmitted,
        t0.elapsed().as_secs_f64()
    );
    if r.complete {
        r.goodput_pct
    } else {
        0.0
    }
}

/// `sz FILE` → relay → `rz` in a fresh folder; real time, at most `limit`.
pub fn lrzsz(size: usize, faults: Faults, limit: Duration, seed: u64) -> io::Result<()> {
    let dir = std::env::temp_dir().join(format!("stagehand-bench-lrzsz-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out"))?;
    let data = random_bytes(size, seed);
    let src = dir.join("payload.bin");
    std::fs::write(&src, &data)?;
    let t0 = Instant::now();
    let mut sz = Command::new("sz")
        .args(["-b", "-q"])
        .arg(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot run sz ({e}): install lrzsz")))?;
    let mut rz = Command::new("rz")
        .args(["-b", "-y", "-q"])
        .current_dir(dir.join("out"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot run rz ({e}): install lrzsz")))?;
    let to_file = |fd: std::os::fd::OwnedFd| File::from(fd);
    let sz_out = to_file(sz.stdout.take().expect("piped").into());
    let sz_in = to_file(sz.stdin.take().expect("piped").into());
    let rz_out = to_file(rz.stdout.take().expect("piped").into());
    let rz_in = to_file(rz.stdin.take().expect("piped").into());
    for f in [&sz_out, &sz_in, &rz_out, &rz_in] {
        relay::set_pipe_size(f.as_raw_fd());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let up = relay::spawn_direction(sz_out, rz_in, RATE, faults, seed ^ 1, stop.clone());
    let down = relay::spawn_direction(rz_out, sz_in, RATE, faults, seed ^ 2, stop.clone());
    let mut finished = None;
    while t0.elapsed() < limit {
        if let Some(st) = rz.try_wait()? {
            finished = Some((t0.elapsed(), st));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sz.kill();
    let _ = rz.kill();
    let _ = sz.wait();
    let _ = rz.wait();
    stop.store(true, Ordering::Relaxed);
    let (up, down) = (up.join().unwrap_or_default(), down.join().unwrap_or_default());
    let got = std::fs::read(dir.join("out").join("payload.bin")).unwrap_or_default();
    let exact = got == data;
    match finished {
        Some((t, st)) => println!(
            "serial-lrzsz {}: {} bytes in {:.1} s: goodput {:.1}% of 11520 B/s, rz {st}, byte-exact {exact} (bits flipped {}/{}, bytes dropped {}/{} up/down)",
            faults.describe(),
            size,
            t.as_secs_f64(),
            100.0 * size as f64 / (t.as_secs_f64() * RATE as f64),
            up.flipped,
            down.flipped,
            up.dropped,
            down.dropped
        ),
        None => println!(
            "serial-lrzsz {}: {} bytes: did not finish within {} s ({} of {} bytes received, bits flipped {}/{}, bytes dropped {}/{} up/down)",
            faults.describe(),
            size,
            limit.as_secs(),
            got.len(),
            size,
            up.flipped,
            down.flipped,
            up.dropped,
            down.dropped
        ),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The agent's end of the relay: a serial line at 115200 baud.
struct RelayTransport {
    tx: File,
    rx: File,
}

impl Transport for RelayTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tx.write_all(bytes)
    }
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if !relay::wait_readable(self.rx.as_raw_fd(), timeout) {
            return Ok(0);
        }
        self.rx.read(buf)
    }
    fn is_two_way(&self) -> bool {
        true
    }
    fn reconnect(&mut self) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    }
    fn nominal_rate(&self) -> Option<u64> {
        Some(RATE)
    }
    fn describe(&self) -> String {
        "relay:115200".into()
    }
}

/// When the file's end arrived, whether it verified, and its bytes.
type Arrival = (Duration, bool, Vec<u8>);

/// The real threaded uplink → relay → host receiver, real time, at most `limit`.
pub fn stagehand_relay(size: usize, faults: Faults, limit: Duration, seed: u64) -> io::Result<()> {
    let data = random_bytes(size, seed);
    let (agent_rx_r, agent_rx_w) = relay::small_pipe()?; // relay → agent
    let (up_r, agent_tx_w) = relay::small_pipe()?; // agent → relay
    let (host_rx_r, host_rx_w) = relay::small_pipe()?; // relay → host
    let (down_r, host_tx_w) = relay::small_pipe()?; // host → relay
    let stop = Arc::new(AtomicBool::new(false));
    let up = relay::spawn_direction(up_r, host_rx_w, RATE, faults, seed ^ 1, stop.clone());
    let down = relay::spawn_direction(down_r, agent_rx_w, RATE, faults, seed ^ 2, stop.clone());
    let key = Key([9; 32]);
    let t0 = Instant::now();
    let uplink = Uplink::start(
        Box::new(RelayTransport { tx: agent_tx_w, rx: agent_rx_r }),
        key.clone(),
        b"{}".to_vec(),
    )?;
    let result: Arc<Mutex<Option<Arrival>>> = Arc::default();
    let host = {
        let (result, stop) = (result.clone(), stop.clone());
        let mut rx = host_rx_r;
        let mut tx = host_tx_w;
        std::thread::spawn(move || {
            let mut receiver = Receiver::new(key);
            let mut got = Vec::new();
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if relay::wait_readable(rx.as_raw_fd(), Duration::from_millis(5)) {
                    let Ok(n) = rx.read(&mut buf) else { break };
                    if n == 0 {
                        break;
                    }
                    for ev in receiver.handle_input(&buf[..n], Instant::now()) {
                        match ev {
                            RxEvent::Data { stream: 2, bytes, .. } => got.extend_from_slice(&bytes),
                            RxEvent::StreamEnd { stream: 2, verified, .. } => {
                                *result.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some((t0.elapsed(), verified, std::mem::take(&mut got)));
                            }
                            _ => {}
                        }
                    }
                }
                while let Some(ack) = receiver.poll_transmit(Instant::now()) {
                    if tx.write_all(&ack).is_err() {
                        return;
                    }
                }
            }
        })
    };
    uplink.open(2, Priority::Bulk);
    let writer = {
        let uplink = uplink.clone();
        std::thread::spawn(move || {
            let _ = uplink.write(2, &data);
            let _ = uplink.close(2);
            data
        })
    };
    let deadline = t0 + limit;
    while Instant::now() < deadline && result.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = uplink.finish(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let data = writer.join().unwrap_or_default();
    let _ = host.join();
    let (up, down) = (up.join().unwrap_or_default(), down.join().unwrap_or_default());
    let stats = match stats {
        Ok(s) => s,
        Err(_) => uplink.stats(),
    };
    match result.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some((t, verified, got)) => println!(
            "serial-relay stagehand {}: {} bytes in {:.1} s: goodput {:.1}% of 11520 B/s, verified {verified}, byte-exact {}, frame size reached {} B, retransmitted {} (bits flipped {}/{}, bytes dropped {}/{} up/down)",
            faults.describe(),
            size,
            t.as_secs_f64(),
            100.0 * size as f64 / (t.as_secs_f64() * RATE as f64),
            got == data,
            stats.frame_size,
            stats.retransmitted,
            up.flipped,
            down.flipped,
            up.dropped,
            down.dropped
        ),
        None => println!(
            "serial-relay stagehand {}: {} bytes: did not finish within {} s",
            faults.describe(),
            size,
            limit.as_secs()
        ),
    }
    Ok(())
}
