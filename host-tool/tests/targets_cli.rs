//! The `stagehand targets` and `stagehand agent build` command lines, run as a user would.

use std::process::{Command, Output};

const REQUIRED: [&str; 9] =
    ["x86_64", "x86_32", "armv7lhf", "armv8l64", "armv8b64", "ppc64l", "ppc64b", "riscv64", "mips64l"];

fn stagehand(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagehand")).args(args).output().expect("run stagehand")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn json_lists_the_required_architectures_with_every_field() {
    let o = stagehand(&["targets", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let list = v.as_array().expect("a list of targets");
    let fields = [
        "name",
        "summary",
        "in_morph",
        "uname_m",
        "uname_m_rule",
        "endian",
        "bits",
        "gnu_cpu",
        "gnu_abi",
        "gnu_triple",
        "stage1_triple",
        "kernel_arch",
        "bst_arch",
        "rust",
        "consoles",
        "qemu",
        "kernel",
        "elf",
        "notes",
    ];
    for name in REQUIRED {
        let t = list
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from targets --json"));
        for f in fields {
            assert!(t.get(f).is_some(), "{name}: no field {f}");
        }
        for f in ["binary", "machine", "cpu", "console", "extra_args", "debian_package"] {
            assert!(t["qemu"].get(f).is_some(), "{name}: no qemu.{f}");
        }
        for f in ["machine", "class_bits", "data"] {
            assert!(t["elf"].get(f).is_some(), "{name}: no elf.{f}");
        }
        match t["rust"]["status"].as_str() {
            Some("available") => {
                assert!(t["rust"]["triple"].is_string() && t["rust"]["linker"].is_string(), "{name}")
            }
            Some("unavailable") => assert!(t["rust"]["reason"].is_string(), "{name}"),
            other => panic!("{name}: rust.status {other:?}"),
        }
    }
    let by = |n: &str| list.iter().find(|t| t["name"] == n).unwrap();
    assert_eq!(by("armv8l64")["rust"]["triple"], "aarch64-unknown-linux-musl");
    assert_eq!(by("ppc64b")["uname_m"][0], "ppc64");
    assert_eq!(by("ppc64l")["kernel_arch"], "powerpc");
    assert_eq!(by("x86_32")["gnu_triple"], "i686-baserock-linux-gnu");
    assert_eq!(by("armv8b64")["rust"]["status"], "unavailable");
}

#[test]
fn table_shows_every_required_architecture() {
    let o = stagehand(&["targets"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for name in REQUIRED {
        assert!(out.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} not in\n{out}");
    }
    assert!(out.contains("x86_64-unknown-linux-musl"));
    assert!(out.contains("none: "));
}

#[test]
fn resolve_ppc64_warns_and_names_both() {
    let o = stagehand(&["targets", "resolve", "ppc64"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "ambiguity is a warning, not a failure: {err}");
    assert!(err.contains("AMBIGUOUS") && err.contains("pass --target ppc64b explicitly"), "{err}");
    assert!(out.contains("ppc64b") && out.contains("ppc64 "), "{out}");
}

#[test]
fn resolve_armv7l_explains_the_vfp_rule() {
    let o = stagehand(&["targets", "resolve", "armv7l"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("Tag_ABI_VFP_args: VFP registers") && err.contains("--elf"), "{err}");
    assert!(out.contains("armv7lhf") && out.contains("armv7l "), "{out}");
    let one = stagehand(&["targets", "resolve", "aarch64"]);
    assert_eq!(text(&one).0.trim(), "aarch64: armv8l64");
}

#[test]
fn resolve_nonsense_fails_listing_valid_names() {
    let o = stagehand(&["targets", "resolve", "nonsense"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("nonsense"), "{err}");
    for name in REQUIRED {
        assert!(err.contains(name), "{name} not listed in: {err}");
    }
}

#[test]
fn agent_build_for_armv8b64_says_no_std_exists() {
    let o = stagehand(&["agent", "build", "--target", "armv8b64"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no Rust standard library exists for armv8b64 on stable"), "{err}");
    assert!(err.contains("build-std"), "{err}");
    assert!(!err.contains("Compiling"), "must refuse before running cargo: {err}");
}

#[test]
fn agent_build_for_nonsense_lists_valid_names() {
    let o = stagehand(&["agent", "build", "--target", "nonsense"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("unknown architecture \"nonsense\""), "{err}");
    for name in REQUIRED {
        assert!(err.contains(name), "{name} not listed in: {err}");
    }
    let o = stagehand(&["agent", "build", "--target", "aarch64"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("armv8l64"), "a uname -m value points at the target name: {err}");
}

/// A bare ELF header: enough for `resolve --elf` to read class, byte order, machine, flags.
fn elf_header(wide: bool, big: bool, machine: u16, flags: u32) -> Vec<u8> {
    let mut v = vec![0u8; if wide { 64 } else { 52 }];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = if wide { 2 } else { 1 };
    v[5] = if big { 2 } else { 1 };
    v[6] = 1;
    let b16 = |x: u16| {
        if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    };
    let b32 = |x: u32| {
        if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    };
    v[16..18].copy_from_slice(&b16(2));
    v[18..20].copy_from_slice(&b16(machine));
    let flags_at = if wide { 48 } else { 36 };
    v[flags_at..flags_at + 4].copy_from_slice(&b32(flags));
    v
}

#[test]
fn resolve_with_elf_decides() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("armv7l", elf_header(false, false, 40, 0x0500_0400), "armv7l: armv7lhf"),
        ("armv7l", elf_header(false, false, 40, 0x0500_0200), "armv7l: armv7l"),
        ("mips64", elf_header(true, false, 8, 0), "mips64: mips64l"),
        ("mips64", elf_header(true, true, 8, 0), "mips64: mips64b"),
    ];
    for (i, (uname, bytes, want)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bin{i}"));
        std::fs::write(&f, bytes).unwrap();
        let o = stagehand(&["targets", "resolve", uname, "--elf", f.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(out.lines().any(|l| l == *want), "{uname} {i}: {out}");
        assert!(!err.contains("AMBIGUOUS"), "{err}");
    }
    let x86 = dir.path().join("x86");
    std::fs::write(&x86, elf_header(true, false, 62, 0)).unwrap();
    let o = stagehand(&["targets", "resolve", "armv7l", "--elf", x86.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("not a binary of any target"), "{}", text(&o).1);
}
