//! Shared helpers for the command-line tests.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use stagehand_proto::events::{Event, Hello, ModuleOutcome, Outcome, StreamKind};
use stagehand_proto::wire::sender::{Sender, SenderConfig};
use stagehand_proto::wire::{Key, Priority};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

pub fn stagehand() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagehand"))
}

pub fn run(args: &[&str]) -> Output {
    stagehand().args(args).output().expect("stagehand runs")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A small stage-2-like tree: /tools/bin with busybox, /usr/bin -> /tools/bin.
pub fn stage2_tree(root: &Path) {
    std::fs::create_dir_all(root.join("tools/bin")).unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("tools/bin/busybox"), b"\x7fELF pretend").unwrap();
    std::os::unix::fs::symlink("busybox", root.join("tools/bin/sh")).unwrap();
    std::os::unix::fs::symlink("/tools/bin", root.join("usr/bin")).unwrap();
}

/// A minimal BuildStream-style bundle tarball.
pub fn bundle_tarball(dir: &Path) -> PathBuf {
    let src = dir.join("bundle-src/bootstrap-stage3-sysroot");
    std::fs::create_dir_all(src.join("source")).unwrap();
    std::fs::write(
        src.join("build.sh"),
        "#!/bin/sh\nset -eu\nfor module in hello ; do\n  \"$SRCDIR/build-$module\"\ndone\n",
    )
    .unwrap();
    std::fs::write(src.join("source/build-hello"), "#!/bin/sh\necho hello\n").unwrap();
    let out = dir.join("bundle.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.join("bundle-src"))
        .arg("bootstrap-stage3-sysroot")
        .status()
        .unwrap();
    assert!(st.success());
    out
}

pub fn fake_agent(dir: &Path) -> PathBuf {
    let p = dir.join("agent-bin");
    std::fs::write(&p, b"#!/bin/sh\necho pretend agent\n").unwrap();
    p
}

pub fn write_key(path: &Path, key: &Key) {
    std::fs::write(path, format!("{}\n", key.to_hex())).unwrap();
}

/// What a one-way agent run puts on the line: console noise, then frames of a full run
/// (two modules, logs, a sysroot file), as QEMU's `-serial file:` would record it.
pub fn recorded_run(key: &Key, file: &[u8], outcome: Outcome) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let hello = Hello {
        agent_version: "0.1.0".into(),
        contract: stagehand_proto::CONTRACT_VERSION,
        target: "x86_64".into(),
        kernel: "Linux 6.1.0 x86_64".into(),
        boot_id: "boot-1".into(),
        config_digest: "d".into(),
        mode: "pid1".into(),
    };
    let mut s = Sender::with_session(
        key.clone(),
        serde_json::to_vec(&hello).unwrap(),
        SenderConfig::for_link(false, None),
        42,
    );
    let now = Instant::now();
    let mut wire = b"[    0.000000] Linux version 6.1.0\nRun /init as init process\n".to_vec();
    let pump = |s: &mut Sender, wire: &mut Vec<u8>| {
        while let Some(f) = s.poll_transmit(now) {
            wire.extend_from_slice(&f);
        }
    };
    let ok = ModuleOutcome { success: true, exit_code: Some(0), signal: None };
    s.open(0, Priority::Control);
    let ev = |s: &mut Sender, e: Event| {
        let line = e.to_line();
        assert_eq!(s.write(0, &line).unwrap(), line.len());
    };
    ev(&mut s, Event::Hello(hello.clone()));
    ev(
        &mut s,
        Event::Plan {
            bundle_kind: "buildstream".into(),
            modules: vec!["hello".into(), "world".into()],
            completed: vec![],
        },
    );
    ev(&mut s, Event::StreamOpened { stream: 2, kind: StreamKind::ModuleLog { module: "hello".into() } });
    s.open(2, Priority::Log);
    ev(&mut s, Event::ModuleStarted { index: 0, total: 2, name: "hello".into() });
    s.write(2, b"+ make hello\nhello built\n").unwrap();
    s.close(2).unwrap();
    ev(
        &mut s,
        Event::ModuleFinished { index: 0, name: "hello".into(), outcome: ok.clone(), duration_ms: 1200 },
    );
    pump(&mut s, &mut wire);
    ev(&mut s, Event::StreamOpened { stream: 3, kind: StreamKind::ModuleLog { module: "world".into() } });
    s.open(3, Priority::Log);
    ev(&mut s, Event::ModuleStarted { index: 1, total: 2, name: "world".into() });
    if outcome == Outcome::BuildFailed {
        s.write(3, b"+ make world\nworld.c:1: error: expected ';'\n").unwrap();
        s.close(3).unwrap();
        ev(
            &mut s,
            Event::ModuleFinished {
                index: 1,
                name: "world".into(),
                outcome: ModuleOutcome { success: false, exit_code: Some(2), signal: None },
                duration_ms: 800,
            },
        );
        ev(
            &mut s,
            Event::Finished {
                outcome,
                message: String::new(),
                failed_module: Some("world".into()),
                log_tail: Some("world.c:1: error: expected ';'".into()),
                then: "shell".into(),
            },
        );
    } else {
        s.write(3, b"+ make world\n").unwrap();
        s.close(3).unwrap();
        ev(&mut s, Event::ModuleFinished { index: 1, name: "world".into(), outcome: ok, duration_ms: 3400 });
        ev(
            &mut s,
            Event::StreamOpened {
                stream: 4,
                kind: StreamKind::File { name: "sysroot.tar.gz".into(), compression: "gzip".into() },
            },
        );
        s.open(4, Priority::Bulk);
        pump(&mut s, &mut wire);
        let mut rest = file;
        while !rest.is_empty() {
            let n = s.write(4, rest).unwrap();
            rest = &rest[n..];
            pump(&mut s, &mut wire);
        }
        s.close(4).unwrap();
        let sha = Sha256::digest(file).iter().map(|b| format!("{b:02x}")).collect::<String>();
        ev(
            &mut s,
            Event::FileComplete {
                stream: 4,
                name: "sysroot.tar.gz".into(),
                size: file.len() as u64,
                sha256: sha,
            },
        );
        ev(
            &mut s,
            Event::Finished {
                outcome,
                message: String::new(),
                failed_module: None,
                log_tail: None,
                then: "poweroff".into(),
            },
        );
    }
    s.close(0).unwrap();
    pump(&mut s, &mut wire);
    assert!(s.is_done());
    wire.extend_from_slice(b"reboot: Power down\n");
    wire
}

/// Play a run as a two-way agent over `conn`: frames out, the collector's acks in, until
/// the sender knows everything arrived. Returns false if that did not happen in time.
pub fn two_way_run(key: &Key, file: &[u8], conn: &mut std::net::TcpStream) -> bool {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let hello = Hello {
        agent_version: "0.1.0".into(),
        contract: stagehand_proto::CONTRACT_VERSION,
        target: "x86_64".into(),
        kernel: "Linux".into(),
        boot_id: "b".into(),
        config_digest: "d".into(),
        mode: "pid1".into(),
    };
    let mut s = Sender::with_session(
        key.clone(),
        serde_json::to_vec(&hello).unwrap(),
        SenderConfig::for_link(true, None),
        77,
    );
    let sha = Sha256::digest(file).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let events: Vec<u8> = [
        Event::Hello(hello.clone()),
        Event::Plan { bundle_kind: "script".into(), modules: vec!["only".into()], completed: vec![] },
        Event::ModuleStarted { index: 0, total: 1, name: "only".into() },
        Event::ModuleFinished {
            index: 0,
            name: "only".into(),
            outcome: ModuleOutcome { success: true, exit_code: Some(0), signal: None },
            duration_ms: 5,
        },
        Event::StreamOpened {
            stream: 2,
            kind: StreamKind::File { name: "sysroot.tar".into(), compression: "none".into() },
        },
        Event::FileComplete { stream: 2, name: "sysroot.tar".into(), size: file.len() as u64, sha256: sha },
        Event::Finished {
            outcome: Outcome::Success,
            message: String::new(),
            failed_module: None,
            log_tail: None,
            then: "poweroff".into(),
        },
    ]
    .iter()
    .flat_map(|e| e.to_line())
    .collect();
    s.open(0, Priority::Control);
    s.open(2, Priority::Bulk);
    let (mut ev_off, mut file_off) = (0, 0);
    conn.set_read_timeout(Some(std::time::Duration::from_millis(5))).unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if ev_off < events.len() {
            ev_off += s.write(0, &events[ev_off..]).unwrap();
            if ev_off == events.len() {
                s.close(0).unwrap();
            }
        }
        if file_off < file.len() {
            file_off += s.write(2, &file[file_off..]).unwrap();
            if file_off == file.len() {
                s.close(2).unwrap();
            }
        }
        let now = Instant::now();
        while let Some(f) = s.poll_transmit(now) {
            if conn.write_all(&f).is_err() {
                return false;
            }
        }
        match conn.read(&mut buf) {
            Ok(0) => return s.is_done(),
            Ok(n) => s.handle_input(&buf[..n], Instant::now()),
            Err(_) => {}
        }
        if s.is_done() {
            return true;
        }
    }
    false
}
