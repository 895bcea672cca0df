//! x86_64 end to end: Debian's kernel under `qemu-system-x86_64 -accel tcg`, stage 2 and
//! stage 3 made by real BuildStream from tests/fixtures/e2e-project, collected by the real
//! `stagehand`, and checked on the output files: `sha256sum`, `tar -tvf`, report.json.
//! Ignored by a plain `cargo test`; tests/e2e/run.sh runs them one at a time:
//! `cargo test -p stagehand-e2e --test x86_64 -- --include-ignored --test-threads=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stagehand_e2e::x86::*;
use stagehand_e2e::{child_named, run, sha256sum, workspace};

/// What the stage 3 of e2e-project leaves in the packed sysroot (debootstrap stage 2,
/// Debian's own folders excluded, mtimes clamped), as `tar -tvf --full-time
/// --numeric-owner` prints it. `HELLO` stands for the compiled program's line (its size is
/// gcc's business; its content is checked by running it during the build).
const DEBIAN_TREE: &[&str] = &[
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./",
    "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./bin -> usr/bin",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./boot/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./dev/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./home/",
    "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./lib -> usr/lib",
    "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./lib64 -> usr/lib64",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./media/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./mnt/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./opt/",
    "dr-xr-xr-x 0/0 0 2011-11-10 15:00:00 ./proc/",
    "drwx------ 0/0 0 2011-11-10 15:00:00 ./root/",
    "-rw-r--r-- 0/0 571 2011-11-10 15:00:00 ./root/.bashrc",
    "-rw-r--r-- 0/0 161 2011-11-10 15:00:00 ./root/.profile",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./run/",
    "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./sbin -> usr/sbin",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./srv/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./stagehand/",
    "dr-xr-xr-x 0/0 0 2011-11-10 15:00:00 ./sys/",
    "drwxrwxrwt 0/0 0 2011-11-10 15:00:00 ./tmp/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/bin/",
    "HELLO",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/etc/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/games/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/include/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/lib/",
    "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./usr/local/man -> share/man",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/sbin/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/share/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/share/e2e/",
    "-rw-r--r-- 0/0 19 2011-11-10 15:00:00 ./usr/local/share/e2e/greeting.txt",
    "-rw-r--r-- 0/0 19 2011-11-10 15:00:00 ./usr/local/share/e2e/hello.out",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/share/man/",
    "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/local/src/",
];

const STAGE3_MODULES: &[&str] = &["stage3-greeting", "stage3-hello", "stage3-slow"];

fn assert_debian_tree(tarball: &Path) {
    let listing = tar_listing(tarball);
    let hello = listing.iter().find(|l| l.ends_with(" ./usr/local/bin/hello")).cloned().unwrap_or_default();
    assert!(hello.starts_with("-rwxr-xr-x 0/0 ") && hello.contains(" 2011-11-10 15:00:00 "), "{hello:?}");
    let got: Vec<String> =
        listing.iter().map(|l| if *l == hello { "HELLO".to_string() } else { l.clone() }).collect();
    let want: Vec<String> = DEBIAN_TREE.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "tar listing of {}", tarball.display());
    let elf = tar_cat(tarball, "./usr/local/bin/hello");
    assert_eq!(&elf[..4], b"\x7fELF", "hello is not an ELF program");
    assert_eq!(tar_cat(tarball, "./usr/local/share/e2e/greeting.txt"), b"hello from stage 3\n");
    // Written by running the compiled program on the target.
    assert_eq!(tar_cat(tarball, "./usr/local/share/e2e/hello.out"), b"hello from stage 3\n");
}

fn assert_all_built(run_dir: &Path, modules: &[&str]) -> serde_json::Value {
    let r = report(run_dir);
    let statuses = module_statuses(&r);
    let want: Vec<(String, String)> =
        modules.iter().map(|m| (m.to_string(), "success".to_string())).collect();
    assert_eq!(statuses, want, "{r:#}");
    assert_eq!(r["target"], "x86_64");
    assert_eq!(r["failed_module"], serde_json::Value::Null);
    for (i, m) in modules.iter().enumerate() {
        let log = run_dir.join(format!("logs/{:02}-{m}.log", i + 1));
        assert!(log.is_file(), "{} missing", log.display());
    }
    r
}

/// Boots `image` with `stagehand qemu`, collecting into `out`.
fn qemu(image: &Path, out: &Path, channel: &str, append: &str) -> std::process::Output {
    let mut c = stagehand();
    c.args(["qemu", "--target", "x86_64", "--timeout", "400", "--channel", channel, "--image"]).arg(image);
    c.arg("--out").arg(out);
    if !append.is_empty() {
        c.args(["--append", append]);
    }
    c.stdin(Stdio::null()).output().expect("run stagehand qemu")
}

fn debian_image(work: &Path, bundle: &Path, channel: &str, extra: &[&str]) -> PathBuf {
    let img = work.join("root.img");
    let mut args = vec!["--set", DEBIAN_STAGE2_EXCLUDES];
    args.extend_from_slice(extra);
    image(debian_stage2(), bundle, channel, "ext4", &img, &args);
    img
}

/// Scenario b, the uninterrupted reference for e and h: an ext4 disk booted through
/// Debian's initrd, the channel on the console shared with a talkative kernel.
fn reference_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let work = work_dir("x86_64-ext4-console");
        let img = debian_image(
            &work,
            &bundle("bootstrap/stage3-sysroot.bst"),
            "console",
            &["--set", "quiet_console=false"],
        );
        let out = work.join("run");
        let o = qemu(&img, &out, "console", "loglevel=7");
        assert!(o.status.success(), "{}", text(&o));
        out
    })
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn a_initramfs_busybox_stage2_channel_on_ttys1() {
    if !have_tools() {
        return;
    }
    let _t = Timer::start("a initramfs + ttyS1");
    let work = work_dir("x86_64-initramfs-serial");
    let img = work.join("image.cpio.gz");
    let bundle = workspace().join("tests/fixtures/e2e-project/script-bundle");
    image(busybox_stage2(), &bundle, "serial:/dev/ttyS1,115200", "cpio", &img, &["--compress"]);
    let out = work.join("run");
    let o = qemu(&img, &out, "serial", "");
    assert!(o.status.success(), "{}", text(&o));
    assert_no_init_death(&out);
    let r = assert_all_built(&out, &["greeting", "count", "blob"]);
    assert_eq!(r["mode"], "pid1");
    assert_eq!(r["bundle_kind"], "script");
    let tarball = verified_sysroot(&out);
    let listing = tar_listing(&tarball);
    assert_eq!(
        listing,
        [
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./",
            "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./bin -> tools/bin",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./dev/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./etc/",
            "-rw-r--r-- 0/0 18 2011-11-10 15:00:00 ./etc/stage2-release",
            "dr-xr-xr-x 0/0 0 2011-11-10 15:00:00 ./proc/",
            // From the kernel's own built-in initramfs (usr/default_cpio_list), under ours.
            "drwx------ 0/0 0 2011-11-10 15:00:00 ./root/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./run/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./stagehand/",
            "dr-xr-xr-x 0/0 0 2011-11-10 15:00:00 ./sys/",
            "drwxrwxrwt 0/0 0 2011-11-10 15:00:00 ./tmp/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/bin/",
            "lrwxrwxrwx 0/0 0 2011-11-10 15:00:00 ./usr/bin/sh -> /tools/bin/sh",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/share/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./usr/share/e2e/",
            "-rw-r--r-- 0/0 262144 2011-11-10 15:00:00 ./usr/share/e2e/blob",
            "-rw-r--r-- 0/0 27 2011-11-10 15:00:00 ./usr/share/e2e/greeting.txt",
            "-rw-r--r-- 0/0 2 2011-11-10 15:00:00 ./usr/share/e2e/words",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./var/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./var/lib/",
            "drwxr-xr-x 0/0 0 2011-11-10 15:00:00 ./var/log/",
        ],
        "tar listing of {}",
        tarball.display()
    );
    assert_eq!(tar_cat(&tarball, "./usr/share/e2e/words"), b"5\n");
    let busybox_head: Vec<u8> =
        std::fs::read(busybox_stage2().join("tools/bin/busybox")).unwrap()[..262144].to_vec();
    assert!(
        tar_cat(&tarball, "./usr/share/e2e/blob") == busybox_head,
        "blob differs from the start of busybox"
    );
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn b_ext4_initrd_channel_on_a_noisy_console() {
    if !have_tools() {
        return;
    }
    let _t = Timer::start("b ext4 + console + loglevel=7");
    let out = reference_run();
    assert_no_init_death(out);
    let r = assert_all_built(out, STAGE3_MODULES);
    assert_eq!(r["bundle_kind"], "buildstream");
    assert!(r["resumes"].as_array().is_some_and(|a| a.is_empty()), "{r:#}");
    assert_debian_tree(&verified_sysroot(out));
    // The kernel really talked on the channel's port while the agent used it: the lines
    // a module wrote to /dev/kmsg are in the text between frames.
    let console = String::from_utf8_lossy(&std::fs::read(out.join("console.log")).unwrap()).into_owned();
    for i in 1..=8 {
        assert!(
            console.contains(&format!("e2e: kernel noise {i} from the slow module")),
            "noise line {i} not on the console"
        );
    }
    assert!(console.contains("reboot: Power down"));
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn e_power_cut_in_a_module_resumes_to_the_same_tarball() {
    if !have_tools() {
        return;
    }
    let _t = Timer::start("e power cut + resume");
    let reference = verified_sysroot(reference_run());
    let work = work_dir("x86_64-power-cut");
    let img = debian_image(&work, &bundle("bootstrap/stage3-sysroot.bst"), "serial:/dev/ttyS1,115200", &[]);
    let out = work.join("run");
    // First boot: the slow module sleeps 600 s; cut the power once it has started.
    let mut c = stagehand();
    c.args([
        "qemu",
        "--target",
        "x86_64",
        "--timeout",
        "400",
        "--channel",
        "serial",
        "--append",
        "e2e.sleep=600",
        "--image",
    ]);
    c.arg(&img).arg("--out").arg(&out).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut first = c.spawn().expect("run stagehand qemu");
    let slow_log = out.join("logs/03-stage3-slow.log");
    let started = Instant::now();
    loop {
        if std::fs::read_to_string(&slow_log).is_ok_and(|t| t.contains("slow: started")) {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) || first.try_wait().unwrap().is_some() {
            let _ = first.kill();
            let o = first.wait_with_output().unwrap();
            panic!("the slow module did not start:\n{}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let qemu_pid = child_named(first.id(), "qemu-system-x86").expect("QEMU under stagehand qemu");
    run(Command::new("kill").args(["-KILL", &qemu_pid.to_string()]));
    let o = first.wait_with_output().unwrap();
    assert!(!o.status.success(), "the cut run cannot succeed:\n{}", text(&o));
    let r = report(&out);
    assert_ne!(r["outcome"], "success");
    assert!(!out.join("sysroot.tar.gz").exists());
    // Second boot of the same disk, same collection folder: resumes at the slow module.
    let o = qemu(&img, &out, "serial", "");
    assert!(o.status.success(), "{}", text(&o));
    assert_no_init_death(&out);
    let r = report(&out);
    assert_eq!(r["outcome"], "success", "{r:#}");
    let statuses = module_statuses(&r);
    assert_eq!(
        statuses.last().map(|s| (s.0.as_str(), s.1.as_str())),
        Some(("stage3-slow", "success")),
        "{r:#}"
    );
    let resumes = r["resumes"].as_array().expect("resumes");
    assert_eq!(resumes.len(), 1, "{r:#}");
    assert_eq!(resumes[0]["module"], "stage3-slow");
    assert_eq!(resumes[0]["previous_boots"], 1);
    assert_eq!(r["boot_ids"].as_array().map(Vec::len), Some(2));
    let tarball = verified_sysroot(&out);
    assert_debian_tree(&tarball);
    assert_eq!(sha256sum(&tarball), sha256sum(&reference), "resumed run vs uninterrupted run");
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn f_failing_module_reports_and_powers_off() {
    if !have_tools() {
        return;
    }
    let _t = Timer::start("f failing module");
    let work = work_dir("x86_64-failing-module");
    let img =
        debian_image(&work, &bundle("bootstrap/stage3-broken.bst"), "console", &["--on-failure", "poweroff"]);
    let out = work.join("run");
    let started = Instant::now();
    let o = qemu(&img, &out, "console", "");
    let elapsed = started.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("stage3-broken"), "{}", text(&o));
    assert!(!text(&o).contains("did not power off by itself"), "QEMU had to be stopped:\n{}", text(&o));
    assert!(elapsed < Duration::from_secs(300));
    assert_no_init_death(&out);
    let r = report(&out);
    assert_eq!(r["outcome"], "build_failed", "{r:#}");
    assert_eq!(r["failed_module"], "stage3-broken");
    let tail = r["log_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("broken: about to fail on purpose"), "log tail: {tail:?}");
    assert_eq!(
        module_statuses(&r),
        [("stage3-greeting", "success"), ("stage3-hello", "success"), ("stage3-broken", "failed")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let broken = r["modules"][2].clone();
    // BuildStream's module script turns any failing command into `exit 1`.
    assert_eq!(broken["exit_code"], 1, "{broken:#}");
    let log = std::fs::read_to_string(out.join("logs/03-stage3-broken.log")).unwrap();
    assert!(log.contains("broken: about to fail on purpose"));
    assert!(!out.join("sysroot.tar.gz").exists(), "no sysroot from a failed build");
    // The board powered itself off: the console ends with the kernel's power-down line.
    let console = String::from_utf8_lossy(&std::fs::read(out.join("console.log")).unwrap()).into_owned();
    assert!(console.contains("reboot: Power down"), "no power-off on the console");
}

/// The first process named `name` among the children of `pid`.
/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The newest Debian kernel in /boot.
fn kernel() -> PathBuf {
    let mut ks: Vec<PathBuf> = std::fs::read_dir("/boot")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    ks.sort();
    ks.pop().expect("a /boot/vmlinuz-*")
}

/// `stagehand collect --input FILE`.
fn collect_file(input: &Path, key: &Path, out: &Path) -> std::process::Output {
    stagehand()
        .args(["collect", "--input"])
        .arg(input)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run stagehand collect")
}

/// Either the right file (same sha256 as the clean run) or a loud failure (exit 3, only a
/// `.partial`): never a wrong file.
fn assert_right_file_or_loud_failure(o: &std::process::Output, out: &Path, clean_sha: &str) -> bool {
    let final_file = out.join("sysroot.tar.gz");
    match o.status.code() {
        Some(0) => {
            assert_eq!(sha256sum(&verified_sysroot(out)), clean_sha, "{}", text(o));
            true
        }
        Some(3) => {
            assert!(!final_file.exists(), "exit 3 but a sysroot.tar.gz was written:\n{}", text(o));
            let r = report(out);
            assert_ne!(r["outcome"], "success", "{r:#}");
            false
        }
        other => panic!("unexpected exit {other:?}:\n{}", text(o)),
    }
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn g_tampered_channel_recording_is_rejected_never_a_wrong_file() {
    use stagehand_proto::wire::{auth::Key, cobs, frame};
    if !have_tools() {
        return;
    }
    let _t = Timer::start("g tampering (recorded channel)");
    let work = work_dir("x86_64-tamper-file");
    let img = work.join("image.cpio.gz");
    let bundle = workspace().join("tests/fixtures/e2e-project/script-bundle");
    // One-way: nothing comes back through a file, so the agent sends every frame twice.
    image(busybox_stage2(), &bundle, "serial:/dev/ttyS1,115200,oneway", "cpio", &img, &["--compress"]);
    let key_file = work.join("image.cpio.gz.key");
    let channel = work.join("channel.out");
    let console = work.join("console.out");
    let status = qemu_initramfs(&img, &console)
        .arg("-serial")
        .arg(format!("file:{}", channel.display()))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "QEMU: {status}");
    let console_text = String::from_utf8_lossy(&std::fs::read(&console).unwrap()).into_owned();
    assert!(!console_text.contains("Attempted to kill init"));
    let recording = std::fs::read(&channel).unwrap();

    // Untouched: verifies.
    let clean = work.join("clean");
    let o = collect_file(&channel, &key_file, &clean);
    assert!(o.status.success(), "{}", text(&o));
    let clean_sha = sha256sum(&verified_sysroot(&clean));
    assert_no_init_death(&clean);

    // A wrong key: every frame is rejected, nothing is written as verified.
    let wrong_key = work.join("wrong.key");
    std::fs::write(&wrong_key, format!("{}\n", "5a".repeat(32))).unwrap();
    let wrong = work.join("wrong-key");
    let o = collect_file(&channel, &wrong_key, &wrong);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!wrong.join("sysroot.tar.gz").exists());

    // Flipped bytes on the line: recovered from the repeated copies, or a loud failure.
    let mut flipped = recording.clone();
    let mut n = 0;
    let mut at = recording.len() / 10;
    while at < recording.len() * 9 / 10 {
        flipped[at] ^= 0x55;
        n += 1;
        at += 7919;
    }
    assert!(n >= 10, "recording too short to tamper with ({} bytes)", recording.len());
    let flipped_in = work.join("flipped.out");
    std::fs::write(&flipped_in, &flipped).unwrap();
    let out = work.join("flipped");
    let o = collect_file(&flipped_in, &key_file, &out);
    let recovered = assert_right_file_or_loud_failure(&o, &out, &clean_sha);
    eprintln!(
        "flipped {n} bytes: {}",
        if recovered { "recovered from the repeats" } else { "failed loudly" }
    );

    // A forged frame (another key) carrying altered bytes of the sysroot stream, put before
    // the genuine one: rejected, the genuine copy is used.
    let key = Key::from_hex_file(&key_file).unwrap();
    let mut pos = 0;
    let mut forged_at = None;
    while pos < recording.len() {
        let end = recording[pos..].iter().position(|&b| b == 0).map_or(recording.len(), |i| pos + i);
        if end > pos {
            if let Some(raw) = cobs::decode(&recording[pos..end]) {
                if let Ok(f) = frame::parse(&raw, &key, frame::Direction::AgentToHost) {
                    if let frame::Message::Data { stream, offset, bytes } = &f.msg {
                        if *stream >= 2 && bytes.len() > 200 && forged_at.is_none() {
                            let mut evil = bytes.clone();
                            for b in evil.iter_mut().take(64) {
                                *b = b'X';
                            }
                            let forged = frame::Frame {
                                session: f.session,
                                seq: f.seq,
                                msg: frame::Message::Data { stream: *stream, offset: *offset, bytes: evil },
                            };
                            let mut wire = Vec::new();
                            frame::encode(
                                &forged,
                                &Key([0x42; 32]),
                                frame::Direction::AgentToHost,
                                &mut wire,
                            );
                            forged_at = Some((pos.saturating_sub(1), wire));
                        }
                    }
                }
            }
        }
        pos = end + 1;
    }
    let (insert_at, wire) = forged_at.expect("a data frame of a log or the sysroot in the recording");
    let mut injected = recording[..insert_at].to_vec();
    injected.extend_from_slice(&wire);
    injected.extend_from_slice(&recording[insert_at..]);
    let injected_in = work.join("injected.out");
    std::fs::write(&injected_in, &injected).unwrap();
    let out = work.join("injected");
    let o = collect_file(&injected_in, &key_file, &out);
    assert!(o.status.success(), "a rejected forgery must not stop the transfer:\n{}", text(&o));
    assert_eq!(sha256sum(&verified_sysroot(&out)), clean_sha);
    assert!(text(&o).contains("authentication tag"), "the forged frame was not reported:\n{}", text(&o));
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn h_container_mode_gives_the_same_sysroot() {
    if !have_tools() {
        return;
    }
    let _t = Timer::start("h container (unshare)");
    let reference = verified_sysroot(reference_run());
    let work = work_dir("x86_64-container");
    let root = work.join("root");
    // Its own network namespace too: without one, sysfs cannot be mounted in a user
    // namespace, and /sys would be packed as the bare folder (0755) instead of the mounted
    // sysfs (0555) the QEMU run packs. So the channel is a file, not loopback TCP.
    image(
        debian_stage2(),
        &bundle("bootstrap/stage3-sysroot.bst"),
        "file:/stagehand/channel.out",
        "dir",
        &root,
        &["--set", DEBIAN_STAGE2_EXCLUDES],
    );
    let agent = Command::new("timeout")
        .args([
            "300",
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--mount",
            "--net",
            "--fork",
            "chroot",
        ])
        .arg(&root)
        .arg("/init")
        .env("STAGEHAND_MODE", "container")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(agent.status.success(), "agent in the container: {}\n{}", agent.status, text(&agent));
    let out = work.join("run");
    let o = collect_file(&root.join("stagehand/channel.out"), &work.join("root.key"), &out);
    assert!(o.status.success(), "{}", text(&o));
    let r = assert_all_built(&out, STAGE3_MODULES);
    assert_eq!(r["mode"], "container");
    let tarball = verified_sysroot(&out);
    assert_eq!(tar_listing(&tarball), tar_listing(&reference), "container vs QEMU listing");
    assert_debian_tree(&tarball);
    assert_eq!(sha256sum(&tarball), sha256sum(&reference), "container vs QEMU tarball");
}

/// Copies guest → host bytes from `from` to `to`, flipping one bit every `every` bytes in
/// the window [`start`, `end`) and sending a frame forged with another key once, at `start`.
fn tampering_pump(
    mut from: impl std::io::Read,
    mut to: impl std::io::Write,
    start: usize,
    end: usize,
    every: usize,
) -> (usize, usize) {
    use stagehand_proto::wire::{auth::Key, frame};
    let mut seen = 0usize;
    let mut flips = 0usize;
    let mut forged = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        for (i, b) in chunk.iter_mut().enumerate() {
            let at = seen + i;
            if at >= start && at < end && (at - start) % every == every - 1 {
                *b ^= 0x10;
                flips += 1;
            }
        }
        if !forged && seen + n >= start {
            let evil = frame::Frame {
                session: 1,
                seq: 1_000_000,
                msg: frame::Message::Data { stream: 2, offset: 0, bytes: b"forged log line\n".to_vec() },
            };
            let mut wire = Vec::new();
            frame::encode(&evil, &Key([0x42; 32]), frame::Direction::AgentToHost, &mut wire);
            if to.write_all(&wire).is_err() {
                break;
            }
            forged = true;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        seen += n;
    }
    (seen, flips)
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn g_live_relay_bit_flips_and_forgery_recover_two_way() {
    use std::os::unix::net::UnixStream;
    if !have_tools() {
        return;
    }
    let _t = Timer::start("g tampering (live relay)");
    let work = work_dir("x86_64-tamper-relay");
    let img = work.join("image.cpio.gz");
    let bundle = workspace().join("tests/fixtures/e2e-project/script-bundle");
    image(busybox_stage2(), &bundle, "serial:/dev/ttyS1,115200", "cpio", &img, &["--compress"]);
    let key = work.join("image.cpio.gz.key");
    let port = free_port();
    let out = work.join("run");
    let collector = stagehand()
        .args(["collect", "--listen", &format!("127.0.0.1:{port}"), "--timeout", "300", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = work.join("channel.sock");
    // QEMU waits for the relay to connect before it starts the guest: no byte is lost.
    let mut qemu = qemu_initramfs(&img, &work.join("console.log"))
        .arg("-chardev")
        .arg(format!("socket,id=ch0,path={},server=on,wait=on", sock.display()))
        .args(["-serial", "chardev:ch0"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let guest = {
        let t0 = Instant::now();
        loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if t0.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("QEMU's channel socket {}: {e}", sock.display()),
            }
        }
    };
    let host = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the collector listens");
    let (g2, h2) = (guest.try_clone().unwrap(), host.try_clone().unwrap());
    let up = std::thread::spawn(move || tampering_pump(g2, h2, 4096, 200_000, 2500));
    let down = std::thread::spawn(move || {
        let (mut h, mut g) = (host, guest);
        let _ = std::io::copy(&mut h, &mut g);
    });
    let qstatus = qemu.wait().unwrap();
    assert!(qstatus.success(), "QEMU: {qstatus}");
    let o = collector.wait_with_output().unwrap();
    let (seen, flips) = up.join().unwrap();
    drop(down);
    eprintln!("relay: {seen} bytes from the guest, {flips} bits flipped, one forged frame");
    assert!(flips >= 10, "too little traffic to tamper with: {seen} bytes");
    assert!(o.status.success(), "{}", text(&o));
    let shown = text(&o);
    assert!(shown.contains("rejected a frame: corrupt frame"), "flipped bits not seen:\n{shown}");
    assert!(shown.contains("authentication tag"), "forged frame not rejected:\n{shown}");
    let r = assert_all_built(&out, &["greeting", "count", "blob"]);
    assert_eq!(r["bundle_kind"], "script");
    let console = String::from_utf8_lossy(&std::fs::read(work.join("console.log")).unwrap()).into_owned();
    assert!(!console.contains("Attempted to kill init"));
    let tarball = verified_sysroot(&out);
    let busybox_head: Vec<u8> =
        std::fs::read(busybox_stage2().join("tools/bin/busybox")).unwrap()[..262144].to_vec();
    assert!(
        tar_cat(&tarball, "./usr/share/e2e/blob") == busybox_head,
        "blob differs from the start of busybox"
    );
    assert_eq!(tar_cat(&tarball, "./usr/share/e2e/words"), b"5\n");
    assert!(names(&tar_listing(&tarball)).iter().all(|n| !n.contains("forged")));
}

/// `qemu-system-x86_64` (TCG, 300 s at most) booting the initramfs `img` with Debian's
/// kernel, its console (first serial port) into the file `console`; the caller adds the
/// channel.
fn qemu_initramfs(img: &Path, console: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["300", "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none", "-no-reboot"])
        .args(["-monitor", "none", "-nic", "none", "-kernel"])
        .arg(kernel())
        .arg("-initrd")
        .arg(img)
        .args(["-append", "rdinit=/init console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()));
    cmd
}
