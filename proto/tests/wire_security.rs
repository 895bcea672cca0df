//! Authentication: forged, replayed, reflected and foreign-session frames are rejected.

use stagehand_proto::wire::frame::{encode, Direction, Frame, Message, RejectReason};
use stagehand_proto::wire::receiver::{Receiver, RxEvent};
use stagehand_proto::wire::sender::{Sender, SenderConfig};
use stagehand_proto::wire::{cobs, Key, Priority};
use std::time::{Duration, Instant};

fn key() -> Key {
    Key([0x5a; 32])
}

/// Run a clean two-way exchange to the end; returns every byte the agent sent.
fn session(sender: &mut Sender, rx: &mut Receiver, data: &[u8]) -> (Vec<u8>, Vec<RxEvent>) {
    sender.open(2, Priority::Bulk);
    sender.write(2, data).unwrap();
    sender.close(2).unwrap();
    let (mut wire, mut events) = (Vec::new(), Vec::new());
    let mut now = Instant::now();
    for _ in 0..10_000 {
        while let Some(b) = sender.poll_transmit(now) {
            wire.extend_from_slice(&b);
            events.extend(rx.handle_input(&b, now));
        }
        now += Duration::from_millis(20);
        while let Some(ack) = rx.poll_transmit(now) {
            sender.handle_input(&ack, now);
        }
        if sender.is_done() {
            break;
        }
    }
    assert!(sender.is_done());
    (wire, events)
}

fn data_of(events: &[RxEvent]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| match e {
            RxEvent::Data { bytes, .. } => bytes.clone(),
            _ => vec![],
        })
        .collect()
}

fn rejected(events: &[RxEvent], reason: RejectReason) -> u32 {
    events
        .iter()
        .map(|e| match e {
            RxEvent::Rejected { reason: r, count } if *r == reason => *count,
            _ => 0,
        })
        .sum()
}

fn new_sender(session: u32) -> Sender {
    Sender::with_session(
        key(),
        b"{\"mode\":\"pid1\"}".to_vec(),
        SenderConfig::for_link(true, Some(11520)),
        session,
    )
}

#[test]
fn replayed_frames_are_rejected_and_deliver_nothing() {
    let (mut s, mut rx) = (new_sender(10), Receiver::new(key()));
    let (wire, events) = session(&mut s, &mut rx, &[9; 5000]);
    assert_eq!(data_of(&events), vec![9; 5000]);
    let again = rx.handle_input(&wire, Instant::now());
    assert!(data_of(&again).is_empty());
    assert_eq!(rejected(&again, RejectReason::Replayed) as u64, s.stats().frames_sent);
}

#[test]
fn replayed_acks_are_rejected_by_the_agent() {
    let (mut s, mut rx) = (new_sender(11), Receiver::new(key()));
    s.open(2, Priority::Bulk);
    s.write(2, &[1; 100]).unwrap();
    let now = Instant::now();
    let hello = s.poll_transmit(now).unwrap();
    rx.handle_input(&hello, now);
    let ack = rx.poll_transmit(now).unwrap();
    s.handle_input(&ack, now);
    assert_eq!(s.stats().acks_received, 1);
    s.handle_input(&ack, now);
    assert_eq!(s.stats().acks_received, 1);
    assert_eq!(s.stats().rejected, 1);
}

#[test]
fn forged_frames_fail_the_tag() {
    let mut rx = Receiver::new(key());
    let mut s = new_sender(12);
    let (_, events) = session(&mut s, &mut rx, b"genuine");
    assert_eq!(data_of(&events), b"genuine");
    // Signed with another key.
    let forged = Frame {
        session: 12,
        seq: 1 << 30,
        msg: Message::Data { stream: 2, offset: 7, bytes: b"evil".to_vec() },
    };
    let mut wire = Vec::new();
    encode(&forged, &Key([1; 32]), Direction::AgentToHost, &mut wire);
    // A genuine frame with its payload changed and the CRC fixed up.
    let mut genuine = Vec::new();
    encode(&Frame { seq: (1 << 30) + 1, ..forged.clone() }, &key(), Direction::AgentToHost, &mut genuine);
    let mut raw = cobs::decode(&genuine[1..genuine.len() - 1]).unwrap();
    let n = raw.len();
    raw[n - 21] ^= 0x20;
    let crc = crc32fast::hash(&raw[..n - 4]);
    raw[n - 4..].copy_from_slice(&crc.to_le_bytes());
    wire.push(0);
    cobs::encode_into(&raw, &mut wire);
    wire.push(0);
    let events = rx.handle_input(&wire, Instant::now());
    assert_eq!(rejected(&events, RejectReason::BadTag), 2);
    assert!(data_of(&events).is_empty());
}

#[test]
fn reflected_frames_are_rejected() {
    let (mut s, mut rx) = (new_sender(13), Receiver::new(key()));
    let now = Instant::now();
    let hello = s.poll_transmit(now).unwrap();
    rx.handle_input(&hello, now);
    let ack = rx.poll_transmit(now).unwrap();
    // The host's own ack sent back to it, and the agent's hello sent back to the agent.
    assert_eq!(rejected(&rx.handle_input(&ack, now), RejectReason::WrongDirection), 1);
    s.handle_input(&hello, now);
    assert_eq!(s.stats().rejected, 1);
    assert_eq!(s.stats().acks_received, 0);
}

#[test]
fn frames_of_another_session_are_rejected() {
    let mut rx = Receiver::new(key());
    let (mut old, mut new) = (new_sender(100), new_sender(200));
    let now = Instant::now();
    let ev = rx.handle_input(&old.poll_transmit(now).unwrap(), now);
    assert!(ev.contains(&RxEvent::NewSession { session: 100, previous: None }));
    // Data of another session (no hello) is not taken.
    let stray =
        Frame { session: 300, seq: 5, msg: Message::Data { stream: 2, offset: 0, bytes: b"x".to_vec() } };
    let mut wire = Vec::new();
    encode(&stray, &key(), Direction::AgentToHost, &mut wire);
    assert_eq!(rejected(&rx.handle_input(&wire, now), RejectReason::OtherSession), 1);
    // A new run says hello: the host follows it, and the old run is shut out.
    let ev = rx.handle_input(&new.poll_transmit(now).unwrap(), now);
    assert!(ev.contains(&RxEvent::NewSession { session: 200, previous: Some(100) }));
    old.reset_link();
    let ev = rx.handle_input(&old.poll_transmit(now).unwrap(), now);
    assert_eq!(rejected(&ev, RejectReason::OtherSession), 1);
}
