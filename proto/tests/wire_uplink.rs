//! The threaded uplink over a real-time simulated pipe, with a host thread collecting.

use stagehand_proto::wire::linesim::{pipe, LineConfig, PipeHost, Rng};
use stagehand_proto::wire::receiver::{Receiver, RxEvent};
use stagehand_proto::wire::sender::{Sender, SenderConfig};
use stagehand_proto::wire::uplink::Uplink;
use stagehand_proto::wire::{Key, Priority, EVENTS_STREAM};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Collected = (BTreeMap<u32, Vec<u8>>, BTreeMap<u32, bool>);

fn host(
    mut end: PipeHost,
    key: Key,
    stop: Arc<AtomicBool>,
    disconnect_after: Option<usize>,
) -> std::thread::JoinHandle<Collected> {
    std::thread::spawn(move || {
        let mut rx = Receiver::new(key);
        let (mut data, mut ends) = (BTreeMap::<u32, Vec<u8>>::new(), BTreeMap::new());
        let mut total = 0;
        let mut disconnect_after = disconnect_after;
        while !stop.load(Ordering::Relaxed) {
            let bytes = end.read(Duration::from_millis(5));
            for ev in rx.handle_input(&bytes, Instant::now()) {
                match ev {
                    RxEvent::Data { stream, offset, bytes } => {
                        let d = data.entry(stream).or_default();
                        assert_eq!(d.len() as u64, offset, "delivered out of order");
                        total += bytes.len();
                        d.extend_from_slice(&bytes);
                    }
                    RxEvent::StreamEnd { stream, verified, .. } => {
                        ends.insert(stream, verified);
                    }
                    _ => {}
                }
            }
            if disconnect_after.is_some_and(|n| total >= n) {
                disconnect_after = None;
                end.disconnect();
                rx.reset_link();
            }
            while let Some(ack) = rx.poll_transmit(Instant::now()) {
                end.write(&ack);
            }
        }
        (data, ends)
    })
}

fn transfer(mut line: LineConfig, disconnect_after: Option<usize>) {
    line.rate = 4 << 20;
    let key = Key([3; 32]);
    let (agent_end, host_end) = pipe(&line);
    let stop = Arc::new(AtomicBool::new(false));
    let collector = host(host_end, key.clone(), stop.clone(), disconnect_after);
    let mut cfg = SenderConfig::for_link(line.two_way, Some(line.rate));
    cfg.window_bytes = 256 * 1024;
    let sender = Sender::new(key, b"{}".to_vec(), cfg);
    let up = Uplink::spawn(Box::new(agent_end), sender).unwrap();
    up.open(EVENTS_STREAM, Priority::Control);
    up.open(4, Priority::Bulk);
    let file = Rng::new(8).bytes(3 << 20);
    let mut w = up.writer(4);
    for chunk in file.chunks(100_000) {
        w.write_all(chunk).unwrap();
        up.write(EVENTS_STREAM, b"{\"event\":\"pack_progress\"}\n").unwrap();
        // Bounded memory: never more than the window buffered.
        assert!(up.buffered(4) <= 256 * 1024, "{} bytes buffered", up.buffered(4));
    }
    let stats = up.finish(Duration::from_secs(60)).unwrap();
    stop.store(true, Ordering::Relaxed);
    let (data, ends) = collector.join().unwrap();
    assert!(data.get(&4) == Some(&file), "file differs");
    assert_eq!(ends.get(&4), Some(&true));
    assert_eq!(ends.get(&EVENTS_STREAM), Some(&true));
    if disconnect_after.is_some() {
        assert!(stats.link_resets >= 1, "{stats:?}");
    }
}

#[test]
fn uplink_two_way_with_a_disconnect() {
    transfer(LineConfig::serial(115200).with_ber(1e-6), Some(1 << 20));
}

#[test]
fn uplink_one_way() {
    let mut line = LineConfig::serial(115200);
    line.two_way = false;
    transfer(line, None);
}

#[test]
fn finish_times_out_with_a_clear_message_when_nobody_listens() {
    let line = LineConfig::serial(1_000_000);
    let (agent_end, _host_end) = pipe(&line);
    let sender = Sender::new(Key([3; 32]), b"{}".to_vec(), SenderConfig::for_link(true, Some(100_000)));
    let up = Uplink::spawn(Box::new(agent_end), sender).unwrap();
    up.open(1, Priority::Log);
    up.write(1, b"hello").unwrap();
    let err = up.finish(Duration::from_millis(300)).unwrap_err().to_string();
    assert!(err.contains("stagehand collect"), "{err}");
}
