//! `stagehand collect` against recordings made with the agent's real sender.

mod common;
use common::*;
use stagehand_proto::events::Outcome;
use stagehand_proto::wire::Key;

fn setup(outcome: Outcome) -> (tempfile::TempDir, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let key = Key([7u8; 32]);
    write_key(&d.path().join("img.key"), &key);
    let file: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.path().join("channel.out"), recorded_run(&key, &file, outcome)).unwrap();
    (d, file)
}

fn collect(d: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let mut args = vec![
        "collect".to_string(),
        "--input".into(),
        p("channel.out"),
        "--key".into(),
        p("img.key"),
        "--out".into(),
        p("out"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    stagehand().args(&args).output().unwrap()
}

#[test]
fn a_recorded_run_is_collected_and_verified() {
    let (d, file) = setup(Outcome::Success);
    let o = collect(d.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = d.path().join("out");
    assert_eq!(std::fs::read(out.join("sysroot.tar.gz")).unwrap(), file);
    assert!(!out.join("sysroot.tar.gz.partial").exists());
    let sha = std::fs::read_to_string(out.join("sysroot.tar.gz.sha256")).unwrap();
    assert!(sha.ends_with("  sysroot.tar.gz\n") && sha.len() == 64 + 2 + 14 + 1);
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("sysroot.tar.gz.sha256")
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success());
    let bst = std::fs::read_to_string(out.join("sysroot.bst")).unwrap();
    assert!(bst.contains("kind: tar") && bst.contains(&sha[..64]));
    assert_eq!(
        std::fs::read_to_string(out.join("logs/01-hello.log")).unwrap(),
        "+ make hello\nhello built\n"
    );
    assert!(std::fs::read_to_string(out.join("console.log")).unwrap().contains("Linux version 6.1.0"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["kernel"], "Linux 6.1.0 x86_64");
    assert_eq!(report["modules"][1]["duration_ms"], 3400);
    assert_eq!(report["sysroot"]["size"], file.len());

    // A finished result is not replaced without --force.
    let again = collect(d.path(), &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("finished result"), "{}", text(&again));
    let forced = collect(d.path(), &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
}

#[test]
fn build_failure_exits_2_with_module_and_log_tail() {
    let (d, _) = setup(Outcome::BuildFailed);
    let o = collect(d.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("world") && t.contains("expected ';'"), "{t}");
    assert!(d.path().join("out/logs/02-world.log").is_file());
}

#[test]
fn wrong_key_is_a_transfer_failure_that_says_so() {
    let (d, _) = setup(Outcome::Success);
    write_key(&d.path().join("img.key"), &Key([8u8; 32]));
    let o = collect(d.path(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("wrong --key"), "{}", text(&o));
    assert!(!d.path().join("out/sysroot.tar.gz").exists());
}

#[test]
fn truncated_recording_is_a_transfer_failure() {
    let (d, _) = setup(Outcome::Success);
    let p = d.path().join("channel.out");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 5]).unwrap();
    let o = collect(d.path(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!d.path().join("out/sysroot.tar.gz").exists());
}

#[test]
fn tampered_recording_never_yields_a_verified_file() {
    let (d, _) = setup(Outcome::Success);
    let p = d.path().join("channel.out");
    let mut bytes = std::fs::read(&p).unwrap();
    // Flip bytes all through the file-data part of the recording (every copy).
    let n = bytes.len();
    for i in (n / 3..n - 200).step_by(97) {
        if bytes[i] != 0 {
            bytes[i] ^= 0x20;
            if bytes[i] == 0 {
                bytes[i] = 1;
            }
        }
    }
    std::fs::write(&p, &bytes).unwrap();
    let o = collect(d.path(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!d.path().join("out/sysroot.tar.gz").exists());
}

#[test]
fn not_a_tty_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_key(&d.path().join("k"), &Key([1; 32]));
    let o = run(&[
        "collect",
        "--serial",
        "/dev/null",
        "--key",
        d.path().join("k").to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/dev/null is not a serial device"), "{}", text(&o));
}

#[test]
fn bad_key_file_and_missing_input_are_named() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("k"), "not hex\n").unwrap();
    std::fs::write(d.path().join("in"), "").unwrap();
    let o = run(&[
        "collect",
        "--input",
        d.path().join("in").to_str().unwrap(),
        "--key",
        d.path().join("k").to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not a stagehand key"), "{}", text(&o));
    write_key(&d.path().join("k"), &Key([1; 32]));
    let o = run(&[
        "collect",
        "--input",
        "/nonexistent/rec",
        "--key",
        d.path().join("k").to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/rec"));
}

#[test]
fn follow_gives_up_at_the_timeout() {
    let d = tempfile::tempdir().unwrap();
    write_key(&d.path().join("k"), &Key([1; 32]));
    std::fs::write(d.path().join("in"), "boot noise\n").unwrap();
    let start = std::time::Instant::now();
    let o = run(&[
        "collect",
        "--input",
        d.path().join("in").to_str().unwrap(),
        "--follow",
        "--timeout",
        "1",
        "--key",
        d.path().join("k").to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("timed out"));
    assert!(start.elapsed().as_secs() < 10);
}

#[test]
fn a_dropped_link_resumes_on_rerun() {
    let (d, file) = setup(Outcome::Success);
    let p = d.path().join("channel.out");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..full.len() * 2 / 3]).unwrap();
    let o = collect(d.path(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // The rest of the line arrives; the rerun picks up where the first run stopped.
    std::fs::write(&p, &full[full.len() * 2 / 3..]).unwrap();
    let o = collect(d.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming"));
    assert_eq!(std::fs::read(d.path().join("out/sysroot.tar.gz")).unwrap(), file);
}

#[test]
fn listen_accepts_a_reconnecting_agent() {
    use std::io::Write;
    let (d, file) = setup(Outcome::Success);
    let wire = std::fs::read(d.path().join("channel.out")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let p = |n: &str| d.path().join(n).to_string_lossy().into_owned();
    let child = stagehand()
        .args(["collect", "--listen", &addr, "--key", &p("img.key"), "--out", &p("out"), "--timeout", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let connect = || {
        for _ in 0..100 {
            if let Ok(c) = std::net::TcpStream::connect(&addr) {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("collect never listened on {addr}");
    };
    // The first connection drops halfway; the agent reconnects and sends the rest.
    // One-way recordings repeat every frame later on: cut early so the first part is incomplete.
    let half = wire.len() / 5;
    let mut c = connect();
    c.write_all(&wire[..half]).unwrap();
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut c = connect();
    c.write_all(&wire[half..]).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("link dropped"), "{}", text(&o));
    assert_eq!(std::fs::read(d.path().join("out/sysroot.tar.gz")).unwrap(), file);
}

#[test]
fn serial_line_through_a_pty() {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let (d, file) = setup(Outcome::Success);
    let wire = std::fs::read(d.path().join("channel.out")).unwrap();
    let (mut master, mut slave): (libc::c_int, libc::c_int) = (0, 0);
    // SAFETY: openpty writes two descriptors into the given integers.
    let rc = unsafe {
        libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: `slave` is a valid descriptor returned by openpty.
    let name = unsafe { std::ffi::CStr::from_ptr(libc::ptsname(master)) }.to_string_lossy().into_owned();
    let p = |n: &str| d.path().join(n).to_string_lossy().into_owned();
    let child = stagehand()
        .args([
            "collect",
            "--serial",
            &name,
            "--baud",
            "115200",
            "--key",
            &p("img.key"),
            "--out",
            &p("out"),
            "--timeout",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // SAFETY: `master` is a valid descriptor owned from here on.
    let mut m = unsafe { std::fs::File::from_raw_fd(master) };
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Raw mode: every byte, 0x00 and newlines included, must arrive unchanged.
    let writer = std::thread::spawn(move || {
        for chunk in wire.chunks(4096) {
            if m.write_all(chunk).is_err() {
                break;
            }
        }
        m // kept open until collect is done: a closed master is an error on the line
    });
    let o = child.wait_with_output().unwrap();
    // SAFETY: closing our copy of the slave descriptor.
    unsafe { libc::close(slave) };
    let _ = writer.join();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(d.path().join("out/sysroot.tar.gz")).unwrap(), file);
}

#[test]
fn two_way_agent_gets_its_acknowledgements() {
    let d = tempfile::tempdir().unwrap();
    let key = Key([9u8; 32]);
    write_key(&d.path().join("img.key"), &key);
    let file: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let p = |n: &str| d.path().join(n).to_string_lossy().into_owned();
    let child = stagehand()
        .args(["collect", "--listen", &addr, "--key", &p("img.key"), "--out", &p("out"), "--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = (0..100)
        .find_map(|_| {
            std::net::TcpStream::connect(&addr).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                None
            })
        })
        .expect("collect listens");
    // The sender only finishes once the collector has acknowledged every byte. A debug
    // build on a loaded 2-core machine took over 20 s here once: the budget is generous.
    assert!(two_way_run(&key, &file, &mut conn), "the sender never saw its data acknowledged");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(d.path().join("out/sysroot.tar")).unwrap(), file);
    assert!(d.path().join("out/sysroot.tar.sha256").is_file());
}
