//! fixup, track, stage2 --from, bundle --from and report from the command line.

mod common;
use common::*;

#[test]
fn fixup_reports_changes_then_nothing() {
    let d = tempfile::tempdir().unwrap();
    stage2_tree(d.path());
    let root = d.path().to_str().unwrap();
    let o = run(&["fixup", root, "--nameserver", "10.0.2.3"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("replaced /usr/bin") && t.contains("linked /usr/bin/sh") && t.contains("resolv.conf"),
        "{t}"
    );
    let o = run(&["fixup", root, "--nameserver", "10.0.2.3"]);
    assert!(o.status.success());
    assert!(text(&o).contains("needs no changes"), "{}", text(&o));
    let o = run(&["fixup", root, "--nameserver", "not-an-ip"]);
    assert_eq!(o.status.code(), Some(1), "usage errors exit 1");
    assert!(run(&["--help"]).status.success());
    let o = run(&["fixup", "/nonexistent/root"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/root"));
}

#[test]
fn track_prints_a_tar_source_with_the_file_sha256() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("sysroot.tar");
    std::fs::write(&f, b"abc").unwrap();
    let o = run(&["track", f.to_str().unwrap()]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("- kind: tar"));
    assert!(out.contains(&format!("url: file://{}", f.display())));
    assert!(out.contains("ref: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    let o = run(&["track", f.to_str().unwrap(), "--url", "https://example.org/s.tar"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("url: https://example.org/s.tar"));
    let o = run(&["track", "/nonexistent.tar"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn stage2_from_a_seed_style_tarball() {
    let d = tempfile::tempdir().unwrap();
    // As the manual process makes it: tar -c ./stage2-ARCH, one top folder.
    stage2_tree(&d.path().join("stage2-x86_64"));
    assert!(std::process::Command::new("tar")
        .arg("-czf")
        .arg(d.path().join("s.tar.gz"))
        .arg("-C")
        .arg(d.path())
        .arg("./stage2-x86_64")
        .status()
        .unwrap()
        .success());
    let out = d.path().join("out");
    let o = run(&[
        "stage2",
        "--target",
        "x86_64",
        "--from",
        d.path().join("s.tar.gz").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("tools/bin/busybox").is_file());
    assert!(std::fs::symlink_metadata(out.join("usr/bin")).unwrap().is_dir());
    let o = run(&[
        "stage2",
        "--target",
        "x86_64",
        "--from",
        "/nonexistent",
        "--out",
        d.path().join("o2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent"));
    let o = run(&[
        "stage2",
        "--target",
        "pdp11",
        "--from",
        out.to_str().unwrap(),
        "--out",
        d.path().join("o3").to_str().unwrap(),
    ]);
    assert!(text(&o).contains("unknown architecture"), "{}", text(&o));
}

#[test]
fn bundle_from_passes_through_and_validates() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle_tarball(d.path());
    let out = d.path().join("copy.tar.gz");
    let o =
        run(&["bundle", "--target", "x86_64", "--from", b.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&b).unwrap());
    // A Morph native-bootstrap tree becomes a tarball.
    let m = d.path().join("morph");
    std::fs::create_dir_all(m.join("src")).unwrap();
    std::fs::write(m.join("native-bootstrap"), "#!/bin/sh\nset -eu\n").unwrap();
    let out = d.path().join("morph.tar.gz");
    let o =
        run(&["bundle", "--target", "x86_64", "--from", m.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("morph"));
    let junk = d.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    let o = run(&[
        "bundle",
        "--target",
        "x86_64",
        "--from",
        junk.to_str().unwrap(),
        "--out",
        d.path().join("j.tar.gz").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("does not look like a build bundle"));
}

#[test]
fn report_summarises_and_writes_html() {
    let d = tempfile::tempdir().unwrap();
    let report = serde_json::json!({
        "agent_version": "0.1.0", "target": "armv8l64", "kernel": "Linux 6.1", "mode": "pid1",
        "boot_ids": ["a", "b"], "bundle_kind": "buildstream",
        "modules": [
            {"index": 0, "name": "binutils", "status": "success", "start": 0.0, "duration_ms": 60000},
            {"index": 1, "name": "gcc", "status": "success", "start": 60.0, "duration_ms": 900000},
            {"index": 2, "name": "make", "status": "failed", "start": 960.0, "duration_ms": 2000, "log": "logs/03-make.log"}
        ],
        "resumes": [{"module": "gcc", "index": 1, "previous_boots": 1, "at": 100.0}],
        "link_resumes": 0, "warnings": [], "sysroot": null,
        "outcome": "build_failed", "message": "", "failed_module": "make", "log_tail": "tail",
        "started_at_unix": 0, "elapsed_s": 962.0
    });
    std::fs::write(d.path().join("report.json"), serde_json::to_vec(&report).unwrap()).unwrap();
    std::fs::create_dir(d.path().join("logs")).unwrap();
    std::fs::write(d.path().join("logs/03-make.log"), "cc -c x.c\nx.c:3: error: boom\n").unwrap();
    let o = run(&["report", d.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("build_failed") && t.contains("FAILED: module make") && t.contains("x.c:3: error: boom"),
        "{t}"
    );
    assert!(t.contains("15m00s"), "{t}");
    let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("gcc"));
    let o = run(&["report", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no report.json"));
}

#[test]
fn serve_nfs_exports_an_image_on_loopback_until_ctrl_c() {
    use std::io::BufRead;
    if !stagehand_testkit::require_tool("ganesha.nfsd") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let image = d.path().join("image");
    std::fs::create_dir_all(image.join("etc/stagehand")).unwrap();
    std::fs::write(image.join("etc/stagehand/agent.json"), "{}").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    // --for-secs: a bound on the server's life if the test itself dies.
    let mut child = stagehand()
        .args(["serve", "nfs", "--image", &image.to_string_lossy(), "--listen", &listen, "--for-secs", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("stop with Ctrl-C") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let o = child.wait_with_output().unwrap();
            panic!("serve nfs ended early: {printed}{}", String::from_utf8_lossy(&o.stderr));
        }
        printed.push_str(&line);
    }
    assert!(
        printed.contains(&format!("stagehand.root=nfs:10.0.2.2:/export,vers=4.2,port={port}")),
        "{printed}"
    );
    assert!(std::net::TcpStream::connect(&listen).is_ok(), "nothing listens on {listen}");
    // SAFETY: SIGINT to our own child, as Ctrl-C would.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(status.success(), "{printed}{rest}");
    assert!(rest.contains("stopped (signal 2)"), "{rest}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(std::net::TcpStream::connect(&listen).is_err(), "ganesha still listens after Ctrl-C");

    let o = stagehand().args(["serve", "nfs", "--image", &d.path().to_string_lossy()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--format dir"), "{}", text(&o));
}
