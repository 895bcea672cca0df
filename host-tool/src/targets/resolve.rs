//! `uname -m` (and optionally a native binary's ELF header) to the target(s) it means.

use super::{all, candidates_for_uname, elf, names, Target};
use anyhow::bail;
use serde::Serialize;
use std::fmt::Write as _;

/// The answer to "which architecture is `uname -m` X (whose binary is this ELF)?".
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub uname_m: String,
    /// Every target this `uname -m` can mean.
    pub candidates: Vec<String>,
    /// Those left after looking at the ELF file, when one was given.
    pub matching: Vec<String>,
    /// Set when more than one target is left: what to do about it.
    pub ambiguity: Option<String>,
    /// What the ELF file said, when one was given.
    pub elf: Option<String>,
}

impl Resolution {
    /// The one target meant, if it is not ambiguous.
    pub fn unique(&self) -> Option<&str> {
        match self.matching.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// Resolves a `uname -m` value, optionally narrowed by a native binary of the machine.
pub fn resolve(uname_m: &str, elf_file: Option<&std::path::Path>) -> anyhow::Result<Resolution> {
    let candidates = candidates_for_uname(uname_m)?;
    if candidates.is_empty() {
        let mut unames: Vec<&str> =
            all()?.iter().flat_map(|t| t.uname_m.iter().map(String::as_str)).collect();
        unames.sort_unstable();
        unames.dedup();
        let hint = if all()?.iter().any(|t| t.name == uname_m) {
            format!(" ({uname_m:?} is a target name, not a `uname -m` value: pass --target {uname_m})")
        } else {
            String::new()
        };
        bail!(
            "unknown `uname -m` value {uname_m:?}{hint}; valid `uname -m` values: {}; valid target names: {}",
            unames.join(", "),
            names()?.join(", ")
        );
    }
    let mut matching: Vec<&Target> = candidates.clone();
    let mut elf_desc = None;
    if let Some(path) = elf_file {
        let info = elf::read(path)?;
        elf_desc = Some(info.describe());
        matching.retain(|t| t.matches_elf(&info));
        if matching.is_empty() {
            bail!(
                "{} ({}) is not a binary of any target `uname -m` {uname_m} means ({}): pass a binary from the machine itself, e.g. a copy of its /bin/sh",
                path.display(),
                info.describe(),
                candidates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let ambiguity = (matching.len() > 1).then(|| ambiguity_advice(uname_m, &matching, elf_file.is_some()));
    Ok(Resolution {
        uname_m: uname_m.to_string(),
        candidates: candidates.iter().map(|t| t.name.clone()).collect(),
        matching: matching.iter().map(|t| t.name.clone()).collect(),
        ambiguity,
        elf: elf_desc,
    })
}

fn ambiguity_advice(uname_m: &str, matching: &[&Target], had_elf: bool) -> String {
    let names: Vec<&str> = matching.iter().map(|t| t.name.as_str()).collect();
    let mut advice = format!("`uname -m` {uname_m} is AMBIGUOUS: it can mean {}.", names.join(" or "));
    // Same machine, two naming generations (Morph's ppc64, BuildStream's ppc64b): prefer the
    // BuildStream-era name, which is what the definitions the tool builds use.
    let same_machine = matching.windows(2).all(|w| w[0].elf == w[1].elf);
    if same_machine {
        let preferred = matching.iter().find(|t| !t.in_morph).unwrap_or(&matching[0]);
        let _ = write!(
            advice,
            " They are one machine under two names; pass --target {} explicitly (or the name your definitions use).",
            preferred.name
        );
    } else {
        for t in matching {
            if let Some(rule) = &t.uname_m_rule {
                let _ = write!(advice, " {}: {rule}.", t.name);
            }
        }
        if !had_elf {
            let _ = write!(
                advice,
                " Give --elf FILE (a binary from that machine, e.g. its /bin/sh) to decide, or pass --target explicitly."
            );
        } else {
            let _ = write!(advice, " Pass --target explicitly.");
        }
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_values_resolve_back() {
        for t in all().unwrap() {
            for u in &t.uname_m {
                let r = resolve(u, None).unwrap();
                assert!(r.matching.contains(&t.name), "{u} does not resolve to {}", t.name);
                if r.matching.len() > 1 {
                    assert!(r.ambiguity.is_some());
                    // Every shared value carries a rule explaining how to decide.
                    assert!(t.uname_m_rule.is_some(), "{}: {u} is shared but has no uname_m_rule", t.name);
                } else {
                    assert_eq!(r.unique(), Some(t.name.as_str()));
                }
            }
        }
    }

    #[test]
    fn morph_mapping_examples() {
        let one = |u: &str| resolve(u, None).unwrap().unique().map(str::to_string);
        assert_eq!(one("x86_64").as_deref(), Some("x86_64"));
        assert_eq!(one("i686").as_deref(), Some("x86_32"));
        assert_eq!(one("i386").as_deref(), Some("x86_32"));
        assert_eq!(one("aarch64").as_deref(), Some("armv8l64"));
        assert_eq!(one("aarch64_be").as_deref(), Some("armv8b64"));
        assert_eq!(one("ppc64le").as_deref(), Some("ppc64l"));
        let ppc = resolve("ppc64", None).unwrap();
        assert_eq!(ppc.matching, vec!["ppc64", "ppc64b"]);
        assert!(ppc.ambiguity.unwrap().contains("pass --target ppc64b explicitly"));
        let arm = resolve("armv7l", None).unwrap();
        assert_eq!(arm.matching, vec!["armv7l", "armv7lhf"]);
        assert!(arm.ambiguity.unwrap().contains("Tag_ABI_VFP_args"));
    }
}
