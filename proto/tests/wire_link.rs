//! Sender and receiver over the simulated line: every fault the link may show.

use stagehand_proto::wire::frame::RejectReason;
use stagehand_proto::wire::linesim::{simulate, Faults, LineConfig, Rng, SimResult, Workload};
use stagehand_proto::wire::receiver::Receiver;
use stagehand_proto::wire::sender::{Sender, SenderConfig};
use stagehand_proto::wire::{Key, Priority, EVENTS_STREAM};

fn key() -> Key {
    Key([0x42; 32])
}

fn workload(file_len: usize, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let events: Vec<u8> = (0..40)
        .flat_map(|i| format!("{{\"event\":\"warning\",\"message\":\"{i}\"}}\n").into_bytes())
        .collect();
    let log: Vec<u8> = (0..300).flat_map(|i| format!("compiling unit {i}\n").into_bytes()).collect();
    vec![
        (EVENTS_STREAM, Priority::Control, events),
        (2, Priority::Log, log),
        (3, Priority::Bulk, rng.bytes(file_len)),
    ]
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

/// The benchmark numbers of docs/protocol.md: a 4 MiB random file at 115200 baud.
#[test]
fn goodput_4mib_at_115200() {
    let mut report = String::new();
    for (ber, min_pct) in [(0.0, 98.0), (1e-5, 85.0), (1e-4, 50.0)] {
        let line = LineConfig::serial(115200).with_ber(ber);
        let work: Workload = vec![(3, Priority::Bulk, Rng::new(4).bytes(4 << 20))];
        let r = run_with(SenderConfig::for_link(true, Some(11520)), &line, &work);
        assert_exact(&r, &work);
        report += &format!(
            "BER {ber:e}: goodput {:.1}% ({:.0} s), frame {} B, frames {} retransmitted {}\n",
            r.goodput_pct, r.elapsed, r.sender.frame_size, r.sender.frames_sent, r.sender.retransmitted
        );
        assert!(r.goodput_pct >= min_pct, "BER {ber}: goodput {:.1}% < {min_pct}%\n{report}", r.goodput_pct);
    }
    eprint!("{report}");
}

fn faulty(up: Faults) -> LineConfig {
    let mut line = LineConfig::serial(115200);
    line.down = Faults { ber: up.ber, drop_byte: up.drop_byte, ..Faults::default() };
    line.up = up;
    line
}

#[test]
fn dropped_bytes() {
    let line = faulty(Faults { drop_byte: 2e-4, ..Faults::default() });
    let r = run(&line, 64 * 1024);
    assert_exact(&r, &workload(64 * 1024, line.seed));
    assert!(r.sender.retransmitted > 0);
}

#[test]
fn duplicated_chunks_are_rejected_as_replays() {
    let line = faulty(Faults { dup_chunk: 0.2, ..Faults::default() });
    let r = run(&line, 64 * 1024);
    assert_exact(&r, &workload(64 * 1024, line.seed));
    assert!(r.rejected.get(&RejectReason::Replayed).is_some_and(|&n| n > 0), "{:?}", r.rejected);
}

#[test]
fn noise_bursts_and_silence() {
    let line = faulty(Faults { burst: 0.05, burst_len: 40, silences: vec![(3.0, 9.0)], ..Faults::default() });
    let r = run(&line, 128 * 1024);
    assert_exact(&r, &workload(128 * 1024, line.seed));
}

#[test]
fn console_text_comes_out_as_text() {
    let line = faulty(Faults { console_text: 0.3, ..Faults::default() });
    let r = run(&line, 32 * 1024);
    assert_exact(&r, &workload(32 * 1024, line.seed));
    assert!(r.text_injected.len() > 100);
    assert_eq!(String::from_utf8_lossy(&r.text), String::from_utf8_lossy(&r.text_injected));
}

#[test]
fn one_way_clean_single_copy() {
    let mut line = LineConfig::serial(115200);
    line.two_way = false;
    let mut cfg = SenderConfig::for_link(false, Some(11520));
    cfg.one_way_repeats = 1;
    let work = workload(64 * 1024, 3);
    let r = run_with(cfg, &line, &work);
    assert_exact(&r, &work);
    assert_eq!(r.sender.retransmitted, 0);
    assert!(r.goodput_pct > 90.0, "{}", r.goodput_pct);
}

#[test]
fn one_way_repeats_cover_a_silence() {
    let mut line = faulty(Faults { silences: vec![(1.0, 1.5), (4.0, 4.4)], ..Faults::default() });
    line.two_way = false;
    let mut cfg = SenderConfig::for_link(false, Some(11520));
    cfg.one_way_repeats = 2;
    cfg.window_bytes = 32 * 1024;
    let work = workload(64 * 1024, 3);
    let r = run_with(cfg.clone(), &line, &work);
    assert_exact(&r, &work);
    // The same line without repetition loses data: the test can fail.
    cfg.one_way_repeats = 1;
    let r = run_with(cfg, &line, &work);
    assert!(!r.complete && r.ends.get(&3) != Some(&(64 * 1024, true)));
}

#[test]
fn one_way_repeats_at_ber_1e5() {
    let mut line = LineConfig::serial(115200).with_ber(1e-5);
    line.two_way = false;
    let mut cfg = SenderConfig::for_link(false, Some(11520));
    cfg.one_way_repeats = 3;
    cfg.initial_frame = 512;
    let work = workload(64 * 1024, 5);
    let r = run_with(cfg, &line, &work);
    assert_exact(&r, &work);
}

#[test]
fn reconnects_resume_without_duplicates_or_gaps() {
    let mut line = LineConfig::serial(115200).with_ber(1e-5);
    line.disconnects = vec![4.0, 9.5, 10.0];
    let work = workload(256 * 1024, 9);
    let r = run_with(SenderConfig::for_link(true, Some(11520)), &line, &work);
    assert_exact(&r, &work);
    assert_eq!(r.sender.link_resets, 3);
    assert_eq!(r.new_sessions, 1);
}

#[test]
fn host_restart_resumes_from_its_snapshot() {
    let mut line = LineConfig::serial(115200);
    line.host_restarts = vec![6.0, 15.0];
    line.disconnects = vec![15.0];
    let work = workload(256 * 1024, 11);
    let r = run_with(SenderConfig::for_link(true, Some(11520)), &line, &work);
    assert_exact(&r, &work);
}

#[test]
fn wrong_key_is_rejected_with_bad_tag() {
    let mut line = LineConfig::serial(115200);
    line.time_limit = 5.0;
    let mut s =
        Sender::with_session(Key([1; 32]), b"{}".to_vec(), SenderConfig::for_link(true, Some(11520)), 5);
    let mut r = Receiver::new(key());
    let res = simulate(&mut s, &mut r, &workload(1024, 1), &line);
    assert!(res.streams.is_empty() && res.hellos.is_empty());
    assert!(res.rejected.get(&RejectReason::BadTag).is_some_and(|&n| n >= 2), "{:?}", res.rejected);
    assert!(RejectReason::BadTag.to_string().contains("wrong --key?"));
}

/// Line bytes per stream byte for the frame sizes the links use (docs/protocol.md).
#[test]
fn frame_overhead() {
    use stagehand_proto::wire::frame::{encode, Direction, Frame, Message, MAX_DATA};
    let mut report = String::new();
    for (what, size) in
        [("min", 64), ("serial start", 1024), ("4 KiB", 4096), ("serial max", 16384), ("TCP max", MAX_DATA)]
    {
        let bytes = Rng::new(size as u64).bytes(size);
        let f = Frame { session: 1, seq: 1, msg: Message::Data { stream: 3, offset: 1 << 20, bytes } };
        let mut wire = Vec::new();
        encode(&f, &key(), Direction::AgentToHost, &mut wire);
        let pct = 100.0 * (wire.len() - size) as f64 / wire.len() as f64;
        report += &format!("{what}: {size} B -> {} B on the line, overhead {pct:.2}%\n", wire.len());
        if size >= 4096 {
            assert!(pct <= 1.5, "{report}");
        }
    }
    eprint!("{report}");
}

#[test]
fn gigabit_like_link_uses_big_frames() {
    let mut line = LineConfig::serial(115200);
    line.rate = 110_000_000;
    line.latency = std::time::Duration::from_micros(200);
    let work: Workload = vec![(3, Priority::Bulk, Rng::new(6).bytes(4 << 20))];
    let r = run_with(SenderConfig::for_link(true, None), &line, &work);
    assert_exact(&r, &work);
    eprintln!("gigabit: {:.1}% goodput, frame {} B", r.goodput_pct, r.sender.frame_size);
    assert!(r.sender.frame_size > 32 * 1024, "{:?}", r.sender);
    assert!(r.goodput_pct > 90.0, "{:.1}%", r.goodput_pct);
}

/// Pump a sender and a receiver by hand; `host_answers` false models a host that went away.
fn pump(s: &mut Sender, r: &mut Receiver, start: std::time::Instant, secs: u64, host_answers: bool) {
    for ms in (0..secs * 1000).step_by(50) {
        let now = start + std::time::Duration::from_millis(ms);
        while let Some(b) = s.poll_transmit(now) {
            if host_answers {
                r.handle_input(&b, now);
            }
        }
        while let Some(ack) = r.poll_transmit(now) {
            s.handle_input(&ack, now);
        }
    }
}

#[test]
fn idle_link_is_kept_and_silent_host_gets_a_new_hello() {
    let mut s = Sender::with_session(key(), b"{}".to_vec(), SenderConfig::for_link(true, Some(11520)), 1);
    let mut r = Receiver::new(key());
    s.open(EVENTS_STREAM, Priority::Control);
    s.write(EVENTS_STREAM, b"{\"event\":\"warning\",\"message\":\"x\"}\n").unwrap();
    let t0 = std::time::Instant::now();
    pump(&mut s, &mut r, t0, 120, true);
    assert_eq!(r.delivered(EVENTS_STREAM), 34);
    assert_eq!(s.stats().link_resets, 0, "an idle link must not be reset");
    assert!(s.stats().frames_sent > 20, "heartbeats: {:?}", s.stats());
    s.write(EVENTS_STREAM, &[b'x'; 100]).unwrap();
    pump(&mut s, &mut r, t0 + std::time::Duration::from_secs(120), 30, false);
    assert_eq!(s.stats().link_resets, 1, "{:?}", s.stats());
}
