//! Targets as text for people: the table of `stagehand targets`, one target's every field,
//! a resolution. Formats; decides nothing.

use super::resolve::Resolution;
use super::{Libc, RustAgent, Target};
use std::fmt::Write as _;

fn rust_cell(t: &Target) -> String {
    match &t.rust {
        RustAgent::Available(r) => {
            format!("{} ({})", r.triple, if r.libc == Libc::Musl { "musl" } else { "gnu+crt-static" })
        }
        RustAgent::Unavailable { reason, .. } => {
            format!("none: {}", reason.split(" (").next().unwrap_or(reason))
        }
    }
}

pub fn resolution_text(r: &Resolution) -> String {
    let mut s = String::new();
    if let Some(e) = &r.elf {
        let _ = writeln!(s, "ELF: {e}");
    }
    match r.unique() {
        Some(one) => {
            let _ = writeln!(s, "{}: {one}", r.uname_m);
        }
        None => {
            let _ = writeln!(s, "{}: AMBIGUOUS: {}", r.uname_m, r.matching.join(" | "));
        }
    }
    s
}

/// The human table printed by `stagehand targets`.
pub fn table_text(targets: &[Target]) -> String {
    let header = ["NAME", "UNAME -M", "GNU TRIPLE", "KERNEL ARCH", "CONSOLE", "QEMU", "RUST TARGET"];
    let rows: Vec<[String; 7]> = targets
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.uname_m.join(",") + if t.uname_m_rule.is_some() { "*" } else { "" },
                t.gnu_triple.clone(),
                t.kernel_arch.clone(),
                t.console().to_string(),
                format!("{} -M {} -cpu {}", t.qemu.binary, t.qemu.machine, t.qemu.cpu),
                rust_cell(t),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                let _ = writeln!(s, "{cell}");
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    s.push_str("* this `uname -m` is shared with another target: see `stagehand targets resolve UNAME_M`\n");
    s
}

pub fn show_text(t: &Target) -> String {
    let mut s = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(s, "{} — {}", t.name, t.summary);
    let _ = writeln!(s, "  in Morph valid_archs: {}", if t.in_morph { "yes" } else { "no" });
    let _ = writeln!(s, "  uname -m:        {}", t.uname_m.join(", "));
    if let Some(rule) = &t.uname_m_rule {
        let _ = writeln!(s, "                   {rule}");
    }
    let _ = writeln!(s, "  word size:       {}-bit {}", t.bits, t.endian);
    let _ = writeln!(s, "  GNU triple:      {}", t.gnu_triple);
    let _ = writeln!(s, "  stage-1 triple:  {}", t.stage1_triple);
    let _ = writeln!(s, "  kernel ARCH:     {}", t.kernel_arch);
    let _ = writeln!(s, "  bst arch option: {}", t.bst_arch);
    match &t.rust {
        RustAgent::Available(r) => {
            let _ = writeln!(s, "  Rust target:     {} (linker {}, {})", r.triple, r.linker, r.cargo_config);
            if !r.debian_packages.is_empty() {
                let _ =
                    writeln!(s, "                   needs apt-get install {}", r.debian_packages.join(" "));
            }
        }
        RustAgent::Unavailable { reason, would_need } => {
            let _ = writeln!(s, "  Rust target:     none: {reason}");
            let _ = writeln!(s, "                   would need {would_need}");
        }
    }
    let _ = writeln!(s, "  console (QEMU):  {}", t.consoles.qemu);
    for b in &t.consoles.boards {
        let _ = writeln!(s, "  console (board): {} — {}", b.device, b.boards);
    }
    let q = &t.qemu;
    let _ = writeln!(
        s,
        "  QEMU:            {} -M {} -cpu {} {} (console={}, package {}, boot {})",
        q.binary,
        q.machine,
        q.cpu,
        q.extra_args.join(" "),
        q.console,
        q.debian_package,
        if q.boot_verified { "verified" } else { "not yet verified" }
    );
    let k = &t.kernel;
    let _ = writeln!(
        s,
        "  kernel package:  {} ({}), image {}",
        opt(&k.debian_package),
        opt(&k.debian_arch),
        opt(&k.image_path)
    );
    if let Some(note) = &k.note {
        let _ = writeln!(s, "                   {note}");
    }
    let e = &t.elf;
    let _ =
        writeln!(s, "  ELF:             {} ({}), ELF{} {}", e.machine_name, e.machine, e.class_bits, e.data);
    for n in &t.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::all;

    #[test]
    fn table_lists_every_target_with_its_rust_cell() {
        let text = table_text(all().unwrap());
        for t in all().unwrap() {
            assert!(text.lines().any(|l| l.starts_with(&format!("{} ", t.name))), "{}", t.name);
        }
        assert!(text.contains("none: no Rust standard library"));
        assert!(text.contains("powerpc64le-unknown-linux-gnu (gnu+crt-static)"));
    }
}
