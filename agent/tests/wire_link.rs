//! Sender and receiver over the simulated line: every fault the link may show.

use stagehand_agent::wire::frame::RejectReason;
use stagehand_agent::wire::linesim::{simulate, Faults, LineConfig, Rng, SimResult, Workload};
use stagehand_agent::wire::receiver::Receiver;
use stagehand_agent::wire::sender::{Sender, SenderConfig};
use stagehand_agent::wire::{Key, Priority, EVENTS_STREAM};

fn key() -> Key {
    Key([0x42; 32])
}

fn workload(file_len: usize, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let events: Vec<u8> = (0..40).flat_map(|i| format!("{{\"event\":\"warning\",\"message\":\"{i}\"}}\n").into_bytes()).collect();
    let log: Vec<u8> = (0..300).flat_map(|i| format!("compiling unit {i}\n").into_bytes()).collect();
    vec![(EVENTS_STREAM, Priority::Control, events), (2, Priority::Log, log), (3, Priority::Bulk, rng.bytes(file_len))]
}

fn run_with(cfg: SenderConfig, line: &LineConfig, work: &Workload) -> SimResult {
    let mut s = Sender::with_session(key(), br#"{"agent_version":"0.1.0"}"#.to_vec(), cfg, 0xABCD);
    let mut r = Receiver::new(key());
    simulate(&mut s, &mut r, work, line)
}

fn run(line: &LineConfig, file_len: usize) -> SimResult {
    let cfg = SenderConfig::for_link(line.two_way, Some(line.rate));
    run_with(cfg, line, &workload(file_len, line.seed))
}

fn assert_exact(r: &SimResult, work: &Workload) {
    assert_eq!(r.order_violations, 0);
    for (id, _, data) in work {
        let got = r.streams.get(id).map(|v| v.as_slice()).unwrap_or(&[]);
        assert_eq!(got.len(), data.len(), "stream {id} length");
        assert!(got == &data[..], "stream {id} content differs");
        assert_eq!(r.ends.get(id), Some(&(data.len() as u64, true)), "stream {id} end");
    }
    assert!(r.complete, "transfer incomplete after {} s: {:?}", r.elapsed, r.sender);
}

#[test]
fn clean_serial_line() {
    let line = LineConfig::serial(115200);
    let r = run(&line, 256 * 1024);
    assert_exact(&r, &workload(256 * 1024, line.seed));
    eprintln!("clean: {:.2}% goodput, {:?}", r.goodput_pct, r.sender);
    assert!(r.goodput_pct > 95.0, "{}", r.goodput_pct);
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(r.new_sessions, 1);
}

#[test]
fn ber_1e5() {
    let line = LineConfig::serial(115200).with_ber(1e-5);
    let r = run(&line, 256 * 1024);
    eprintln!("1e-5: {:.2}% goodput, {:?} {:?}", r.goodput_pct, r.sender, r.rejected);
    assert_exact(&r, &workload(256 * 1024, line.seed));
}

#[test]
fn ber_1e4() {
    let line = LineConfig::serial(115200).with_ber(1e-4);
    let r = run(&line, 128 * 1024);
    eprintln!("1e-4: {:.2}% goodput, {:?} {:?}", r.goodput_pct, r.sender, r.rejected);
    assert_exact(&r, &workload(128 * 1024, line.seed));
    assert!(r.sender.frame_size <= 512, "frame size did not adapt down: {}", r.sender.frame_size);
    assert!(r.rejected.get(&RejectReason::Corrupt).is_some_and(|&n| n > 10));
}
