//! Just enough ELF reading to tell which target a binary belongs to and whether it is
//! statically linked: identity (class, data, e_machine, e_flags), PT_INTERP, DT_NEEDED and,
//! for 32-bit ARM, the float ABI from `.ARM.attributes` (what `readelf -A` shows).

use std::path::Path;

use anyhow::{bail, Context as _};

use super::Endian;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const SHT_ARM_ATTRIBUTES: u32 = 0x7000_0003;
const EM_ARM: u16 = 40;
const EF_ARM_ABI_FLOAT_SOFT: u32 = 0x200;
const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
const TAG_ABI_VFP_ARGS: u64 = 28;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// 32 or 64.
    pub class_bits: u8,
    pub data: Endian,
    pub machine: u16,
    pub flags: u32,
    /// `ET_EXEC` = 2, `ET_DYN` = 3 (static-pie is ET_DYN without an interpreter).
    pub elf_type: u16,
    /// The program interpreter (dynamic loader), if any.
    pub interpreter: Option<String>,
    /// Number of DT_NEEDED entries (shared libraries required).
    pub needed: usize,
    /// `Tag_ABI_VFP_args` from `.ARM.attributes`, if present (1 = VFP registers).
    pub arm_vfp_args: Option<u64>,
}

impl ElfInfo {
    /// Statically linked: no program interpreter and no shared library needed.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed == 0
    }

    /// For 32-bit ARM: "hard" or "soft", from the attributes (as Morph decides), else e_flags.
    pub fn arm_float_abi(&self) -> Option<&'static str> {
        if self.machine != EM_ARM {
            return None;
        }
        match self.arm_vfp_args {
            Some(1) => return Some("hard"),
            Some(_) => return Some("soft"),
            None => {}
        }
        if self.flags & EF_ARM_ABI_FLOAT_HARD != 0 {
            Some("hard")
        } else if self.flags & EF_ARM_ABI_FLOAT_SOFT != 0 {
            Some("soft")
        } else {
            None
        }
    }

    pub fn machine_name(&self) -> String {
        match self.machine {
            3 => "EM_386".into(),
            8 => "EM_MIPS".into(),
            20 => "EM_PPC".into(),
            21 => "EM_PPC64".into(),
            40 => "EM_ARM".into(),
            62 => "EM_X86_64".into(),
            183 => "EM_AARCH64".into(),
            243 => "EM_RISCV".into(),
            n => format!("e_machine {n}"),
        }
    }

    /// One line, e.g. "ELF64 little-endian EM_AARCH64, static".
    pub fn describe(&self) -> String {
        let mut s = format!("ELF{} {} {}", self.class_bits, self.data, self.machine_name());
        if let Some(abi) = self.arm_float_abi() {
            s.push_str(&format!(" ({abi}-float)"));
        }
        match (&self.interpreter, self.needed) {
            (None, 0) => s.push_str(", static"),
            (Some(i), n) => s.push_str(&format!(", dynamic (interpreter {i}, {n} DT_NEEDED)")),
            (None, n) => s.push_str(&format!(", dynamic ({n} DT_NEEDED)")),
        }
        s
    }
}

pub fn read(path: &Path) -> anyhow::Result<ElfInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a usable ELF file", path.display()))
}

struct Reader<'a> {
    b: &'a [u8],
    big: bool,
    wide: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, off: u64) -> anyhow::Result<[u8; N]> {
        let start = usize::try_from(off).context("offset too large")?;
        let end = start.checked_add(N).context("offset too large")?;
        let slice = self.b.get(start..end).with_context(|| format!("truncated at offset {off}"))?;
        Ok(slice.try_into().expect("slice has length N"))
    }
    fn u16(&self, off: u64) -> anyhow::Result<u16> {
        let a = self.bytes::<2>(off)?;
        Ok(if self.big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    fn u32(&self, off: u64) -> anyhow::Result<u32> {
        let a = self.bytes::<4>(off)?;
        Ok(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn u64(&self, off: u64) -> anyhow::Result<u64> {
        let a = self.bytes::<8>(off)?;
        Ok(if self.big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
    /// An address-sized field: u32 in ELF32, u64 in ELF64.
    fn word(&self, off: u64) -> anyhow::Result<u64> {
        if self.wide {
            self.u64(off)
        } else {
            self.u32(off).map(u64::from)
        }
    }
    fn range(&self, off: u64, len: u64) -> anyhow::Result<&[u8]> {
        let start = usize::try_from(off).context("offset too large")?;
        let len = usize::try_from(len).context("size too large")?;
        let end = start.checked_add(len).context("size too large")?;
        self.b.get(start..end).with_context(|| format!("segment {off}+{len} runs past the end of the file"))
    }
}

pub fn parse(b: &[u8]) -> anyhow::Result<ElfInfo> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!("no ELF magic");
    }
    let class_bits = match b.get(4) {
        Some(1) => 32,
        Some(2) => 64,
        other => bail!("bad EI_CLASS {other:?}"),
    };
    let data = match b.get(5) {
        Some(1) => Endian::Little,
        Some(2) => Endian::Big,
        other => bail!("bad EI_DATA {other:?}"),
    };
    let r = Reader { b, big: data == Endian::Big, wide: class_bits == 64 };
    let elf_type = r.u16(16)?;
    let machine = r.u16(18)?;
    let (phoff, shoff, flags, phentsize, phnum, shentsize, shnum) = if r.wide {
        (r.u64(32)?, r.u64(40)?, r.u32(48)?, r.u16(54)?, r.u16(56)?, r.u16(58)?, r.u16(60)?)
    } else {
        (
            u64::from(r.u32(28)?),
            u64::from(r.u32(32)?),
            r.u32(36)?,
            r.u16(42)?,
            r.u16(44)?,
            r.u16(46)?,
            r.u16(48)?,
        )
    };

    let mut interpreter = None;
    let mut needed = 0;
    for i in 0..u64::from(phnum) {
        let ph = phoff.saturating_add(i.saturating_mul(u64::from(phentsize)));
        let p_type = r.u32(ph)?;
        let at = |n: u64| ph.saturating_add(n);
        let (offset, filesz) = if r.wide {
            (r.u64(at(8))?, r.u64(at(32))?)
        } else {
            (u64::from(r.u32(at(4))?), u64::from(r.u32(at(16))?))
        };
        match p_type {
            PT_INTERP => {
                let raw = r.range(offset, filesz)?;
                let path = raw.split(|&c| c == 0).next().unwrap_or_default();
                interpreter = Some(String::from_utf8_lossy(path).into_owned());
            }
            PT_DYNAMIC => {
                let entry = if r.wide { 16 } else { 8 };
                for j in 0..filesz / entry {
                    let tag = r.word(offset.saturating_add(j * entry))?;
                    if tag == 0 {
                        break;
                    }
                    if tag == DT_NEEDED {
                        needed += 1;
                    }
                }
            }
            _ => {}
        }
    }

    let mut arm_vfp_args = None;
    if machine == EM_ARM {
        for i in 0..u64::from(shnum) {
            let sh = shoff.saturating_add(i.saturating_mul(u64::from(shentsize)));
            if r.u32(sh.saturating_add(4))? != SHT_ARM_ATTRIBUTES {
                continue;
            }
            let (offset, size) =
                (u64::from(r.u32(sh.saturating_add(16))?), u64::from(r.u32(sh.saturating_add(20))?));
            arm_vfp_args = arm_attribute(r.range(offset, size)?, r.big, TAG_ABI_VFP_ARGS);
        }
    }

    Ok(ElfInfo { class_bits, data, machine, flags, elf_type, interpreter, needed, arm_vfp_args })
}

fn uleb(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn skip_ntbs(b: &[u8], pos: &mut usize) -> Option<()> {
    let len = b.get(*pos..)?.iter().position(|&c| c == 0)?;
    *pos += len + 1;
    Some(())
}

/// A numeric file-scope attribute of the "aeabi" vendor from an `.ARM.attributes` section.
fn arm_attribute(sec: &[u8], big: bool, want: u64) -> Option<u64> {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    };
    if sec.first() != Some(&b'A') {
        return None;
    }
    let mut pos = 1;
    while pos < sec.len() {
        let len = u32_at(sec, pos)? as usize;
        let sub = sec.get(pos..pos.checked_add(len)?)?;
        pos += len.max(1);
        let mut p = 4;
        let vendor_len = sub.get(p..)?.iter().position(|&c| c == 0)?;
        let vendor = &sub[p..p + vendor_len];
        p += vendor_len + 1;
        if vendor != b"aeabi" {
            continue;
        }
        while p < sub.len() {
            let tag_start = p;
            let kind = uleb(sub, &mut p)?;
            let size = u32_at(sub, p)? as usize;
            p += 4;
            let end = tag_start.checked_add(size)?.min(sub.len());
            if kind == 1 {
                // File scope: tag/value pairs.
                let attrs = sub.get(..end)?;
                while p < end {
                    let tag = uleb(attrs, &mut p)?;
                    // Strings: CPU_raw_name, CPU_name, conformance, and odd tags above 32.
                    if tag == 4 || tag == 5 || tag == 67 || (tag > 32 && tag % 2 == 1) {
                        skip_ntbs(attrs, &mut p)?;
                    } else if tag == 32 {
                        uleb(attrs, &mut p)?;
                        skip_ntbs(attrs, &mut p)?;
                    } else {
                        let v = uleb(attrs, &mut p)?;
                        if tag == want {
                            return Some(v);
                        }
                    }
                }
            }
            p = end.max(tag_start + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: header, program headers and optionally one section.
    fn elf(
        wide: bool,
        big: bool,
        machine: u16,
        flags: u32,
        phdrs: &[(u32, &[u8])],
        arm_attrs: Option<&[u8]>,
    ) -> Vec<u8> {
        let (ehsize, phentsize, shentsize) = if wide { (64u64, 56u64, 64u64) } else { (52, 32, 40) };
        let put16 = |v: &mut Vec<u8>, at: usize, x: u16| {
            v[at..at + 2].copy_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let put32 = |v: &mut Vec<u8>, at: usize, x: u32| {
            v[at..at + 4].copy_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let put64 = |v: &mut Vec<u8>, at: usize, x: u64| {
            v[at..at + 8].copy_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let phoff = ehsize;
        let mut data_off = phoff + phentsize * phdrs.len() as u64;
        let mut v = vec![0u8; data_off as usize];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = if wide { 2 } else { 1 };
        v[5] = if big { 2 } else { 1 };
        v[6] = 1;
        put16(&mut v, 16, 2);
        put16(&mut v, 18, machine);
        for (i, (p_type, content)) in phdrs.iter().enumerate() {
            let ph = (phoff + phentsize * i as u64) as usize;
            put32(&mut v, ph, *p_type);
            if wide {
                put64(&mut v, ph + 8, data_off);
                put64(&mut v, ph + 32, content.len() as u64);
            } else {
                put32(&mut v, ph + 4, data_off as u32);
                put32(&mut v, ph + 16, content.len() as u32);
            }
            v.extend_from_slice(content);
            data_off += content.len() as u64;
        }
        let mut shoff = 0u64;
        let mut shnum = 0u16;
        if let Some(attrs) = arm_attrs {
            let at = v.len() as u64;
            v.extend_from_slice(attrs);
            shoff = v.len() as u64;
            shnum = 1;
            v.resize(v.len() + shentsize as usize, 0);
            let sh = shoff as usize;
            put32(&mut v, sh + 4, SHT_ARM_ATTRIBUTES);
            put32(&mut v, sh + 16, at as u32);
            put32(&mut v, sh + 20, attrs.len() as u32);
        }
        if wide {
            put64(&mut v, 32, phoff);
            put64(&mut v, 40, shoff);
            put32(&mut v, 48, flags);
            put16(&mut v, 52, ehsize as u16);
            put16(&mut v, 54, phentsize as u16);
            put16(&mut v, 56, phdrs.len() as u16);
            put16(&mut v, 58, shentsize as u16);
            put16(&mut v, 60, shnum);
        } else {
            put32(&mut v, 28, phoff as u32);
            put32(&mut v, 32, shoff as u32);
            put32(&mut v, 36, flags);
            put16(&mut v, 40, ehsize as u16);
            put16(&mut v, 42, phentsize as u16);
            put16(&mut v, 44, phdrs.len() as u16);
            put16(&mut v, 46, shentsize as u16);
            put16(&mut v, 48, shnum);
        }
        v
    }

    fn dynamic(wide: bool, big: bool, tags: &[u64]) -> Vec<u8> {
        let mut v = Vec::new();
        for &t in tags.iter().chain(&[0]) {
            for x in [t, 0] {
                if wide {
                    v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
                } else {
                    let x = x as u32;
                    v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
                }
            }
        }
        v
    }

    #[test]
    fn static_and_dynamic_binaries() {
        for (wide, big) in [(true, false), (true, true), (false, false), (false, true)] {
            let s = parse(&elf(wide, big, 21, 0, &[(1, b"")], None)).unwrap();
            assert!(s.is_static());
            assert_eq!(s.machine, 21);
            assert_eq!(s.class_bits, if wide { 64 } else { 32 });
            assert_eq!(s.data, if big { Endian::Big } else { Endian::Little });

            // static-pie: a dynamic section but nothing needed.
            let pie =
                parse(&elf(wide, big, 183, 0, &[(PT_DYNAMIC, &dynamic(wide, big, &[0x6fff_fffb]))], None))
                    .unwrap();
            assert!(pie.is_static(), "{pie:?}");

            let dynamic_bin = elf(
                wide,
                big,
                62,
                0,
                &[
                    (PT_INTERP, b"/lib/ld-musl-x86_64.so.1\0"),
                    (PT_DYNAMIC, &dynamic(wide, big, &[DT_NEEDED, 5, DT_NEEDED])),
                ],
                None,
            );
            let d = parse(&dynamic_bin).unwrap();
            assert!(!d.is_static());
            assert_eq!(d.interpreter.as_deref(), Some("/lib/ld-musl-x86_64.so.1"));
            assert_eq!(d.needed, 2);
            assert!(d.describe().contains("dynamic"));
        }
    }

    fn aeabi_attrs(big: bool, vfp_args: u64) -> Vec<u8> {
        // File scope: Tag_CPU_name "7-A", Tag_CPU_arch 10, Tag_compatibility 0 "", Tag_ABI_VFP_args.
        let mut attrs = vec![5];
        attrs.extend_from_slice(b"7-A\0");
        attrs.extend_from_slice(&[6, 10, 32, 0, 0, TAG_ABI_VFP_ARGS as u8, vfp_args as u8, 30, 2]);
        let file_len = (1 + 4 + attrs.len()) as u32;
        let mut sub = b"aeabi\0".to_vec();
        sub.push(1);
        sub.extend_from_slice(&if big { file_len.to_be_bytes() } else { file_len.to_le_bytes() });
        sub.extend_from_slice(&attrs);
        let sub_len = (4 + sub.len()) as u32;
        let mut sec = vec![b'A'];
        sec.extend_from_slice(&if big { sub_len.to_be_bytes() } else { sub_len.to_le_bytes() });
        sec.extend_from_slice(&sub);
        sec
    }

    #[test]
    fn arm_float_abi_from_attributes_then_flags() {
        let hard = parse(&elf(false, false, EM_ARM, 0x0500_0000, &[], Some(&aeabi_attrs(false, 1)))).unwrap();
        assert_eq!(hard.arm_vfp_args, Some(1));
        assert_eq!(hard.arm_float_abi(), Some("hard"));
        let soft = parse(&elf(false, true, EM_ARM, 0x0500_0000, &[], Some(&aeabi_attrs(true, 0)))).unwrap();
        assert_eq!(soft.arm_float_abi(), Some("soft"));
        let by_flags = parse(&elf(false, false, EM_ARM, 0x0500_0400, &[], None)).unwrap();
        assert_eq!(by_flags.arm_float_abi(), Some("hard"));
        let unknown = parse(&elf(false, false, EM_ARM, 0x0500_0000, &[], None)).unwrap();
        assert_eq!(unknown.arm_float_abi(), None);
        let not_arm = parse(&elf(true, false, 62, 0x400, &[], None)).unwrap();
        assert_eq!(not_arm.arm_float_abi(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(b"").is_err());
        assert!(parse(b"#!/bin/sh\n").is_err());
        assert!(parse(b"\x7fELF\x03\x01").is_err());
        let good = elf(true, false, 62, 0, &[(PT_INTERP, b"/lib/ld.so\0")], None);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        let mut bad = good.clone();
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&bad).is_err());
        let hard = elf(false, false, EM_ARM, 0, &[], Some(&aeabi_attrs(false, 1)));
        for cut in 0..hard.len() {
            let _ = parse(&hard[..cut]);
        }
    }
}
