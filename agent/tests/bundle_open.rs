//! Opening bundles of each format, packed and unpacked, and the errors for bad ones.
// The harness runs host tools (tar, gzip, unshare) as a plain process: std's spawn and
// wait are right here; the agent's own code goes through pid1 (see agent/clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use stagehand_agent::bundle::{open, BundleKind, ExecStep, Step};

fn write_exec(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The layout `bst source-bundle` writes.
fn bst_bundle(dir: &Path, modules: &[&str]) {
    let build_sh = format!(
        "#!/bin/sh\nset -eu\nexport PATH='/usr/bin:/usr/sbin/:/sbin:/bin:/tools/bin:/tools/sbin'\nexport SRCDIR='./source'\n\
         for module in {} ; do\n    \"$SRCDIR/build-$module\"\ndone\n",
        modules.join(" ")
    );
    write_exec(&dir.join("build.sh"), &build_sh);
    for m in modules {
        write_exec(&dir.join(format!("source/build-{m}")), &format!("#!/bin/sh\necho building {m}\n"));
        fs::create_dir_all(dir.join(format!("source/{m}"))).unwrap();
    }
}

fn targz(src_parent: &Path, what: &str, out: &Path) {
    assert!(Command::new("tar")
        .args(["czf", out.to_str().unwrap(), "-C", src_parent.to_str().unwrap(), what])
        .status()
        .unwrap()
        .success());
}

#[test]
fn buildstream_folder() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    bst_bundle(&root.join("bundle/stage3"), &["base", "hello", "gcc"]);
    let b = open(root, Path::new("/bundle/stage3"), BundleKind::Auto, Path::new("/work")).unwrap();
    assert_eq!(b.kind(), BundleKind::BuildStream);
    assert_eq!(b.module_names(), vec!["base", "hello", "gcc"]);
    assert_eq!(
        b.env()[0],
        ("PATH".to_string(), "/usr/bin:/usr/sbin/:/sbin:/bin:/tools/bin:/tools/sbin".to_string())
    );
    assert_eq!(b.env()[1], ("SRCDIR".to_string(), "./source".to_string()));
    let Step::Exec(e) = &b.modules()[1].steps[0] else { panic!() };
    assert_eq!(e.argv, vec!["/bundle/stage3/source/build-hello"]);
    assert_eq!(e.cwd, PathBuf::from("/bundle/stage3"));
    assert_eq!(b.modules()[1].steps[1], Step::Exec(ExecStep::ldconfig(true)));
    // The folder holding the top folder is accepted too; the identity follows the content.
    let b2 = open(root, Path::new("/bundle"), BundleKind::Auto, Path::new("/work")).unwrap();
    assert_eq!(b2.identity(), b.identity());
    fs::write(root.join("bundle/stage3/source/build-gcc"), "#!/bin/sh\necho changed\n").unwrap();
    let b3 = open(root, Path::new("/bundle"), BundleKind::BuildStream, Path::new("/work")).unwrap();
    assert_ne!(b3.identity(), b.identity());
}

#[test]
fn buildstream_tarball_is_unpacked_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = tempfile::tempdir().unwrap();
    bst_bundle(&src.path().join("stage3"), &["a", "b"]);
    targz(src.path(), "stage3", &root.join("b.tar.gz"));
    let b =
        open(root, Path::new("/b.tar.gz"), BundleKind::Auto, Path::new("/var/lib/stagehand/bundle")).unwrap();
    assert_eq!(b.kind(), BundleKind::BuildStream);
    assert_eq!(b.module_names(), vec!["a", "b"]);
    let sha = Command::new("sha256sum").arg(root.join("b.tar.gz")).output().unwrap();
    assert!(String::from_utf8_lossy(&sha.stdout).starts_with(b.identity()));
    let unpacked = root.join("var/lib/stagehand/bundle/stage3/source/build-a");
    assert!(unpacked.is_file());
    assert!(b.locations().contains(&PathBuf::from("/var/lib/stagehand/bundle")));
    fs::write(&unpacked, "#!/bin/sh\necho kept\n").unwrap();
    let again =
        open(root, Path::new("/b.tar.gz"), BundleKind::BuildStream, Path::new("/var/lib/stagehand/bundle"))
            .unwrap();
    assert_eq!(again.identity(), b.identity());
    assert_eq!(fs::read_to_string(&unpacked).unwrap(), "#!/bin/sh\necho kept\n");
}

fn morph_tree(root: &Path) {
    let script = "#!/bin/sh\nset -eu\nexport PATH=/usr/bin:/bin:/usr/sbin:/sbin:/tools/bin:/tools/sbin\nexport SRCDIR=/src\nexport CFLAGS=\"-O2\"\n\
        if [ -d /zlib.inst/zlib.build ]; then rm -rf /zlib.inst; fi\nmkdir /zlib.inst\nenv DESTDIR=/zlib.inst $SRCDIR/build-zlib\n(cd /zlib.inst; find . | cpio -umdp /)\n\
        if [ -e /sbin/ldconfig ]; then /sbin/ldconfig; fi\n\
        if [ -d /gcc.inst/gcc.build ]; then rm -rf /gcc.inst; fi\nmkdir /gcc.inst\nenv DESTDIR=/gcc.inst $SRCDIR/build-gcc\n(cd /gcc.inst; find . | cpio -umdp /)\n";
    write_exec(&root.join("native-bootstrap"), script);
    write_exec(&root.join("src/build-zlib"), "#!/bin/sh\necho zlib\n");
    write_exec(&root.join("src/build-gcc"), "#!/bin/sh\necho gcc\n");
}

#[test]
fn morph_tree_and_tarball() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    morph_tree(root);
    let b = open(root, Path::new("/"), BundleKind::Auto, Path::new("/var/lib/stagehand/bundle")).unwrap();
    assert_eq!(b.kind(), BundleKind::Morph);
    assert_eq!(b.module_names(), vec!["zlib", "gcc"]);
    assert!(b.env().contains(&("CFLAGS".to_string(), "-O2".to_string())));
    let steps = &b.modules()[0].steps;
    assert_eq!(steps[0], Step::Remove(PathBuf::from("/zlib.inst")));
    assert_eq!(steps[1], Step::MakeDir(PathBuf::from("/zlib.inst")));
    let Step::Exec(build) = &steps[2] else { panic!() };
    assert_eq!(build.argv, vec!["/src/build-zlib"]);
    assert_eq!(build.env, vec![("DESTDIR".to_string(), "/zlib.inst".to_string())]);
    let Step::Exec(install) = &steps[3] else { panic!() };
    assert_eq!(install.argv, vec!["/bin/sh", "-c", "find . | cpio -umdp /"]);
    assert_eq!(install.cwd, PathBuf::from("/zlib.inst"));

    // The same tree as a tarball, unpacked into an empty root.
    let t2 = tempfile::tempdir().unwrap();
    let root2 = t2.path();
    assert!(Command::new("tar")
        .args(["czf", root2.join("morph.tgz").to_str().unwrap(), "-C", root.to_str().unwrap(), "."])
        .status()
        .unwrap()
        .success());
    let b2 = open(root2, Path::new("/morph.tgz"), BundleKind::Morph, Path::new("/var/lib/stagehand/bundle"))
        .unwrap();
    assert_eq!(b2.module_names(), vec!["zlib", "gcc"]);
    assert!(root2.join("src/build-gcc").is_file());
}

#[test]
fn scripts() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    write_exec(&root.join("one.sh"), "#!/bin/sh\necho one\n");
    let b = open(root, Path::new("/one.sh"), BundleKind::Auto, Path::new("/w")).unwrap();
    assert_eq!((b.kind(), b.module_names()), (BundleKind::Script, vec!["one".to_string()]));
    fs::create_dir(root.join("steps")).unwrap();
    fs::write(root.join("steps/10-last.sh"), "echo last\n").unwrap();
    fs::write(root.join("steps/02-second.sh"), "echo 2\n").unwrap();
    fs::write(root.join("steps/01-first.sh"), "echo 1\n").unwrap();
    fs::write(root.join("steps/README"), "not a step\n").unwrap();
    let b = open(root, Path::new("/steps"), BundleKind::Auto, Path::new("/w")).unwrap();
    assert_eq!(b.module_names(), vec!["first", "second", "last"]);
    let Step::Exec(e) = &b.modules()[0].steps[0] else { panic!() };
    assert_eq!(e.argv, vec!["/bin/sh", "/steps/01-first.sh"], "not executable: run with sh");
}

fn open_err(root: &Path, path: &str, kind: BundleKind) -> String {
    match open(root, Path::new(path), kind, Path::new("/w")) {
        Ok(_) => panic!("{path} should not open"),
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "one line: {s}");
            s
        }
    }
}

#[test]
fn bad_bundles_give_one_clear_line() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    assert!(open_err(root, "/missing.tar.gz", BundleKind::Auto).contains("No such file"));

    fs::write(root.join("garbage.tar.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).unwrap();
    assert!(open_err(root, "/garbage.tar.gz", BundleKind::Auto).contains("corrupt"));

    let src = tempfile::tempdir().unwrap();
    bst_bundle(&src.path().join("stage3"), &["a"]);
    targz(src.path(), "stage3", &root.join("good.tar.gz"));
    let good = fs::read(root.join("good.tar.gz")).unwrap();
    fs::write(root.join("cut.tar.gz"), &good[..good.len() / 2]).unwrap();
    assert!(open_err(root, "/cut.tar.gz", BundleKind::Auto).contains("corrupt"));

    fs::create_dir_all(src.path().join("other/docs")).unwrap();
    fs::write(src.path().join("other/docs/x"), "x").unwrap();
    targz(src.path(), "other", &root.join("other.tar.gz"));
    let e = open_err(root, "/other.tar.gz", BundleKind::Auto);
    assert!(e.contains("not a bundle") && e.contains("build.sh") && e.contains("native-bootstrap"), "{e}");

    assert!(open_err(root, "/good.tar.gz", BundleKind::Morph).contains("not a Morph tree"));

    bst_bundle(&root.join("incomplete"), &["a", "b"]);
    fs::remove_file(root.join("incomplete/source/build-b")).unwrap();
    let e = open_err(root, "/incomplete", BundleKind::Auto);
    assert!(e.contains("module b is listed") && e.contains("missing"), "{e}");

    fs::create_dir_all(root.join("nomodules")).unwrap();
    fs::write(root.join("nomodules/build.sh"), "echo nothing\n").unwrap();
    assert!(open_err(root, "/nomodules", BundleKind::Auto).contains("for module in"));

    fs::create_dir_all(root.join("emptydir")).unwrap();
    assert!(open_err(root, "/emptydir", BundleKind::Auto).contains("expected `build.sh`"));
}

#[test]
fn foreign_architecture_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    bst_bundle(&root.join("b"), &["a"]);
    let own = fs::read("/proc/self/exe").unwrap();
    let own_machine = u16::from_le_bytes([own[18], own[19]]);
    let other: u16 = if own_machine == 183 { 62 } else { 183 };
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(18, 0);
    elf.extend_from_slice(&other.to_le_bytes());
    elf.resize(64, 0);
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    write_exec(&root.join("usr/bin/dash"), "");
    fs::write(root.join("usr/bin/dash"), &elf).unwrap();
    std::os::unix::fs::symlink("dash", root.join("usr/bin/sh")).unwrap();
    let e = open_err(root, "/b", BundleKind::Auto);
    assert!(e.contains("another architecture") && e.contains("/bin/sh"), "{e}");
}
