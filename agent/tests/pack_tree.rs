//! The packer against GNU tar and gzip: listing, extraction, determinism, gzip, disk full,
//! constant memory.
// The harness runs host tools (tar, gzip, unshare) as a plain process: std's spawn and
// wait are right here; the agent's own code goes through pid1 (see agent/clippy.toml).
#![allow(clippy::disallowed_methods)]

use stagehand_testkit::require_tool;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use stagehand_agent::pack::{pack, Excludes, GzipOptions, PackOptions, PackReport};

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
}

fn long_dir() -> String {
    format!("usr/share/{}", "a-very-long-folder-name-".repeat(6))
}

/// A small tree with every kind of entry.
fn make_tree(root: &Path) {
    for d in ["bin", "usr/bin", "etc", "proc/1", "tmp", "tools/bin", "var/lib/stagehand", "empty"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("usr/bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
    fs::set_permissions(root.join("usr/bin/hello"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("etc/config"), vec![b'c'; 1000]).unwrap();
    fs::set_permissions(root.join("etc/config"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::hard_link(root.join("usr/bin/hello"), root.join("bin/hello-again")).unwrap();
    std::os::unix::fs::symlink("../usr/bin/hello", root.join("bin/hello")).unwrap();
    let long = root.join(long_dir());
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("file-with-a-long-path"), b"long\n").unwrap();
    std::os::unix::fs::symlink(format!("/{}/file-with-a-long-path", long_dir()), root.join("bin/long-link"))
        .unwrap();
    mkfifo(&root.join("etc/fifo"));
    let _sock = std::os::unix::net::UnixListener::bind(root.join("etc/socket")).unwrap();
    fs::write(root.join("proc/1/status"), b"x").unwrap();
    fs::write(root.join("tmp/junk"), b"x").unwrap();
    fs::write(root.join("tools/bin/gcc"), b"x").unwrap();
    fs::write(root.join("var/lib/stagehand/state.json"), b"{}").unwrap();
    fs::write(root.join("init"), b"agent").unwrap();
    fs::write(root.join("big"), (0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
}

fn pack_to_vec(opts: &PackOptions) -> (Vec<u8>, PackReport) {
    let mut out = Vec::new();
    let mut calls = 0;
    let report = pack(opts, &mut out, &mut |_, _| calls += 1).unwrap();
    assert!(calls >= 1);
    (out, report)
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn tar_listing(archive: &[u8], args: &[&str]) -> String {
    let mut child = Command::new("tar")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = archive.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn round_trip_through_gnu_tar() {
    if !require_tool("tar") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    make_tree(&root);
    let (archive, report) = pack_to_vec(&PackOptions::new(&root));
    assert_eq!(report.archive_bytes, archive.len() as u64);
    assert_eq!(report.sha256, sha(&archive));
    assert!(report.warnings.iter().any(|w| w.contains("/etc/socket is a socket")), "{:?}", report.warnings);

    let listing = tar_listing(&archive, &["-tvf", "-"]);
    let names: Vec<&str> = listing.lines().map(|l| l.split_whitespace().nth(5).unwrap_or("")).collect();
    // Excludes: the folder stays for /proc and /tmp, nothing below; /tools, /init, state gone.
    assert!(names.contains(&"./proc/") && names.contains(&"./tmp/"), "{listing}");
    for gone in ["./proc/1/", "./tmp/junk", "./tools/", "./init", "./var/lib/stagehand/", "./etc/socket"] {
        assert!(!names.contains(&gone), "{gone} should be excluded:\n{listing}");
    }
    // Stable order: sorted by name bytes, parents first.
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.trim_end_matches('/').split('/').cmp(b.trim_end_matches('/').split('/')));
    assert_eq!(names, sorted);
    assert!(listing.lines().any(|l| l.starts_with("prw-r-----") && l.contains("./etc/fifo")), "{listing}");
    // The first name in archive order holds the data, the later one links to it.
    assert!(
        listing.lines().any(|l| l.starts_with("-rwsr-xr-x") && l.contains("./bin/hello-again")),
        "{listing}"
    );
    assert!(listing.contains("./usr/bin/hello link to ./bin/hello-again"), "{listing}");
    assert!(listing.contains("./bin/hello -> ../usr/bin/hello"), "{listing}");
    assert!(listing.contains(&format!("./{}/file-with-a-long-path", long_dir())), "{listing}");

    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    tar_listing(&archive, &["-xpf", "-", "-C", out.to_str().unwrap()]);
    let m = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(m("usr/bin/hello").mode() & 0o7777, 0o4755);
    assert_eq!(m("etc/config").mode() & 0o7777, 0o600);
    assert_eq!(m("usr/bin/hello").ino(), m("bin/hello-again").ino());
    assert_eq!(fs::read_link(out.join("bin/hello")).unwrap(), PathBuf::from("../usr/bin/hello"));
    assert!(fs::read_link(out.join("bin/long-link"))
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("file-with-a-long-path"));
    assert!(m("etc/fifo").file_type().is_fifo_like());
    assert_eq!(fs::read(out.join("big")).unwrap(), fs::read(root.join("big")).unwrap());
    assert_eq!(m("etc/config").mtime(), fs::metadata(root.join("etc/config")).unwrap().mtime());
    assert_eq!(fs::read(out.join(long_dir()).join("file-with-a-long-path")).unwrap(), b"long\n");
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn the_same_tree_packs_to_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    make_tree(&root);
    let (a, ra) = pack_to_vec(&PackOptions::new(&root));
    // Touch access times and re-create the socket: nothing of that may show.
    let _ = fs::read(root.join("big"));
    let (b, rb) = pack_to_vec(&PackOptions::new(&root));
    assert_eq!(ra.sha256, rb.sha256);
    assert_eq!(a, b);
    // A copy of the tree (other inode and device numbers) gives the same archive too.
    if require_tool("cp") {
        let copy = t.path().join("copy");
        assert!(Command::new("cp")
            .args(["-a", root.to_str().unwrap(), copy.to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        let (c, _) = pack_to_vec(&PackOptions::new(&copy));
        assert_eq!(sha(&a), sha(&c));
    }
}

#[test]
fn clamp_mtime_makes_a_rebuilt_tree_pack_the_same() {
    if !require_tool("tar") || !require_tool("touch") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("usr/share")).unwrap();
    fs::write(root.join("usr/share/new"), b"built now\n").unwrap();
    fs::write(root.join("old"), b"from 2001\n").unwrap();
    assert!(Command::new("touch")
        .args(["-d", "@1000000000"])
        .arg(root.join("old"))
        .status()
        .unwrap()
        .success());
    let limit = 1_320_937_200;
    let mut opts = PackOptions::new(&root);
    opts.clamp_mtime = Some(limit);
    let (a, _) = pack_to_vec(&opts);
    let listing = tar_listing(&a, &["-tv", "--full-time"]);
    // Newer than the limit: clamped; older: kept.
    assert!(
        listing.lines().any(|l| l.contains("2011-11-10 15:00:00") && l.ends_with("./usr/share/new")),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l.contains("2001-09-09 01:46:40") && l.ends_with("./old")), "{listing}");
    // The same files made again later (new mtimes everywhere) pack to the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::remove_dir_all(root.join("usr")).unwrap();
    fs::create_dir_all(root.join("usr/share")).unwrap();
    fs::write(root.join("usr/share/new"), b"built now\n").unwrap();
    let (b, _) = pack_to_vec(&opts);
    assert_eq!(sha(&a), sha(&b));
    // Without the clamp they differ: the test above can fail.
    let (c, _) = pack_to_vec(&PackOptions::new(&root));
    assert_ne!(sha(&a), sha(&c));
}

#[test]
fn gzip_output_is_the_tarball_and_identical_across_thread_counts() {
    if !require_tool("gzip") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    make_tree(&root);
    // Enough content for several 128 KiB blocks.
    fs::write(
        root.join("more"),
        (0..1_500_000u32).map(|i| ((i * 7) % 13 + (i / 1000) % 5) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let (plain, _) = pack_to_vec(&PackOptions::new(&root));
    let mut outs = Vec::new();
    for threads in [1, 2, 4] {
        let mut o = PackOptions::new(&root);
        o.gzip = Some(GzipOptions { level: 6, threads });
        let (gz, report) = pack_to_vec(&o);
        assert_eq!(report.sha256, sha(&gz));
        outs.push(gz);
    }
    assert_eq!(outs[0], outs[1], "1 vs 2 threads");
    assert_eq!(outs[0], outs[2], "1 vs 4 threads");
    let mut child =
        Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let gz = outs[0].clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&gz).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    assert!(out.stdout == plain, "gzip -d output differs from the plain pack");
    assert!(outs[0].len() < plain.len());
}

#[test]
fn keep_copy_equals_the_stream_and_is_left_out() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    make_tree(&root);
    let mut o = PackOptions::new(&root);
    o.keep_copy = Some(root.join("var/cache/sysroot.tar"));
    let (a, _) = pack_to_vec(&o);
    assert_eq!(fs::read(root.join("var/cache/sysroot.tar")).unwrap(), a);
    let (b, _) = pack_to_vec(&o);
    assert_eq!(a, b, "the copy must not pack itself");
}

#[test]
fn custom_excludes_and_missing_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    make_tree(&root);
    let mut o = PackOptions::new(&root);
    o.excludes = Excludes::none();
    o.excludes.add("/etc/*");
    let mut out = Vec::new();
    pack(&o, &mut out, &mut |_, _| {}).unwrap();
    let names: Vec<String> = tar::Archive::new(&out[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"./tools/bin/gcc".to_string()));
    assert!(names.contains(&"./etc".to_string()) || names.contains(&"./etc/".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("./etc/c")));
    let e = pack(&PackOptions::new(t.path().join("nope")), &mut Vec::new(), &mut |_, _| {}).unwrap_err();
    assert!(e.0.contains("cannot pack") && e.0.contains("nope"), "{e}");
}

struct FailingWriter(usize);
impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 < buf.len() {
            return Err(std::io::Error::other("link down"));
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_an_error_not_a_short_archive() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    make_tree(&root);
    let e = pack(&PackOptions::new(&root), &mut FailingWriter(100_000), &mut |_, _| {}).unwrap_err();
    assert!(e.0.contains("link down"), "{e}");
}

#[test]
fn device_nodes_when_really_root() {
    let uid_map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let really_root = unsafe { libc::geteuid() } == 0
        && uid_map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    if !really_root {
        eprintln!("SKIPPED: device nodes need real root outside a user namespace");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    let c = std::ffi::CString::new(root.join("etc/null").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
    let c = std::ffi::CString::new(root.join("etc/loop9").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o660, libc::makedev(7, 9)) }, 0);
    fs::set_permissions(root.join("etc/null"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(root.join("etc/loop9"), fs::Permissions::from_mode(0o660)).unwrap();
    let (a, _) = pack_to_vec(&PackOptions::new(&root));
    let listing = tar_listing(&a, &["-tvf", "-"]);
    assert!(
        listing.lines().any(|l| l.starts_with("crw-rw-rw-") && l.contains("1,3") && l.contains("./etc/null")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("brw-rw----") && l.contains("7,9") && l.contains("./etc/loop9")),
        "{listing}"
    );
}

/// Runs inside a child process (see the tests that re-execute this binary).
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child_entry() {
    let Ok(what) = std::env::var("STAGEHAND_PACK_CHILD") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("STAGEHAND_PACK_DIR").unwrap());
    match what.as_str() {
        "disk-full" => {
            let mut o = PackOptions::new(dir.join("tree"));
            o.keep_copy = Some(dir.join("small/copy.tar"));
            let e = pack(&o, &mut std::io::sink(), &mut |_, _| {}).unwrap_err();
            println!("PACK ERROR: {e}");
            assert!(e.0.contains("keep_copy") && e.0.contains("No space left"), "{e}");
        }
        "memory" => {
            let mut o = PackOptions::new(dir.join("tree"));
            o.gzip = Some(GzipOptions { level: 1, threads: 2 });
            let r = pack(&o, &mut std::io::sink(), &mut |_, _| {}).unwrap();
            let status = fs::read_to_string("/proc/self/status").unwrap();
            let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap().to_string();
            println!("PACKED {} tree bytes into {} archive bytes; {hwm}", r.tree_bytes, r.archive_bytes);
        }
        "changing" => {
            let (a, r) = pack_to_vec(&PackOptions::new(dir.join("tree")));
            for w in &r.warnings {
                println!("WARNING {w}");
            }
            // The archive stays valid: sizes in the headers are what was written.
            let mut ar = tar::Archive::new(&a[..]);
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).unwrap();
                println!("ENTRY {} {}", e.path().unwrap().display(), v.len());
            }
        }
        other => panic!("unknown child {other}"),
    }
}

fn child(what: &str, dir: &Path, wrap: &[&str]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut args: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    args.extend([
        exe.to_string_lossy().into_owned(),
        "--exact".into(),
        "child_entry".into(),
        "--nocapture".into(),
        "--include-ignored".into(),
        "--test-threads=1".into(),
    ]);
    Command::new(&args[0])
        .args(&args[1..])
        .env("STAGEHAND_PACK_CHILD", what)
        .env("STAGEHAND_PACK_DIR", dir)
        .output()
        .unwrap()
}

#[test]
fn disk_full_on_keep_copy_is_a_clear_error() {
    if !require_tool("unshare") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    let mut x: u64 = 1;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    fs::write(tree.join("noise"), noise).unwrap();
    fs::create_dir_all(t.path().join("small")).unwrap();
    let script =
        format!("mount -t tmpfs -o size=1m tmpfs {} && exec \"$0\" \"$@\"", t.path().join("small").display());
    let out = child(
        "disk-full",
        t.path(),
        &["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", &script],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("PACK ERROR: keep_copy"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files whose size changes between stat and read (here: kernel files bind-mounted into
/// the tree, which report a size unlike their content) keep the archive valid.
#[test]
fn files_changing_size_while_read_keep_the_archive_valid() {
    if !require_tool("unshare") {
        return;
    }
    let shrinking = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("grows"), b"").unwrap();
    fs::write(tree.join("shrinks"), b"").unwrap();
    let mut script = format!("mount --bind /proc/version {}", tree.join("grows").display());
    if shrinking.exists() {
        script += &format!(" && mount --bind {} {}", shrinking.display(), tree.join("shrinks").display());
    }
    script += " && exec \"$0\" \"$@\"";
    let out = child(
        "changing",
        t.path(),
        &["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", &script],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("WARNING /grows grew while packing: cut at 0 bytes"), "{text}");
    assert!(text.contains("ENTRY ./grows 0"), "{text}");
    if shrinking.exists() {
        assert!(
            text.contains("WARNING /shrinks shrank while packing: padded with zeros to 4096 bytes"),
            "{text}"
        );
        assert!(text.contains("ENTRY ./shrinks 4096"), "{text}");
    } else {
        eprintln!("SKIPPED the shrinking half: no {}", shrinking.display());
    }
}

#[test]
fn memory_stays_small_on_a_big_tree() {
    let mib: u64 = std::env::var("STAGEHAND_PACK_MEM_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(96);
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..4 {
        // Sparse files: big to read, nothing on disk.
        fs::File::create(tree.join(format!("big{i}"))).unwrap().set_len(mib << 18).unwrap();
    }
    let out = child("memory", t.path(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let line =
        text.lines().find_map(|l| l.find("PACKED").map(|i| &l[i..])).expect("the child reports its numbers");
    println!("{line}");
    let kb: u64 = line.split("VmHWM:").nth(1).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    assert!(kb < 48 * 1024, "peak RSS {kb} kB while packing {mib} MiB");
    assert!(line.contains(&format!("PACKED {} tree bytes", mib << 20)), "{line}");
}

/// `STAGEHAND_PACK_BENCH=/some/tree cargo test --release --test pack_tree -- --ignored bench`
#[test]
#[ignore]
fn bench_throughput() {
    let dir =
        PathBuf::from(std::env::var("STAGEHAND_PACK_BENCH").expect("set STAGEHAND_PACK_BENCH to a tree"));
    for (label, gzip) in [("tar", None), ("gzip-1-thread", Some(1)), ("gzip-2-threads", Some(2))] {
        let mut o = PackOptions::new(&dir);
        o.excludes = Excludes::none();
        o.gzip = gzip.map(|threads| GzipOptions { level: 6, threads });
        let start = std::time::Instant::now();
        let r = pack(&o, &mut std::io::sink(), &mut |_, _| {}).unwrap();
        let s = start.elapsed().as_secs_f64();
        println!(
            "{label}: {} MB tree -> {} MB archive in {s:.2} s = {:.1} MB/s (tree) sha {}",
            r.tree_bytes / 1_000_000,
            r.archive_bytes / 1_000_000,
            r.tree_bytes as f64 / 1e6 / s,
            &r.sha256[..16]
        );
    }
}
