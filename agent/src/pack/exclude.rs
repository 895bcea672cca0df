//! Which paths of the tree stay out of the archive.

/// Left out by default. `/x/*` keeps the folder `/x` itself (an empty mount point in the
/// archive) but none of its content; `/x` leaves out the folder and everything in it.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/proc/*",
    "/sys/*",
    "/dev/*",
    "/tmp/*",
    "/run/*",
    "/tools",
    "/buildstream*",
    "/var/lib/stagehand",
    "/init",
    "/lost+found",
];

/// Exclude patterns: absolute paths inside the tree, matched segment by segment, where a
/// segment may use `*` (any run of characters but `/`) and `?` (one character). A pattern
/// matches a path and everything below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excludes {
    patterns: Vec<String>,
}

impl Default for Excludes {
    fn default() -> Excludes {
        Excludes::defaults()
    }
}

fn normalize(p: &str) -> String {
    let trimmed = p.trim().trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    format!("/{}", segs.join("/"))
}

impl Excludes {
    pub fn defaults() -> Excludes {
        Excludes { patterns: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect() }
    }

    pub fn none() -> Excludes {
        Excludes { patterns: Vec::new() }
    }

    pub fn add(&mut self, pattern: &str) {
        let p = normalize(pattern);
        if p != "/" && !self.patterns.contains(&p) {
            self.patterns.push(p);
        }
    }

    /// Remove a pattern (as it was added or listed in the defaults); false if absent.
    pub fn remove(&mut self, pattern: &str) -> bool {
        let p = normalize(pattern);
        let before = self.patterns.len();
        self.patterns.retain(|x| *x != p);
        before != self.patterns.len()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// `path` is absolute inside the tree: `/usr/bin/gcc`.
    pub fn is_excluded(&self, path: &str) -> bool {
        let segs: Vec<&[u8]> = path.split('/').filter(|s| !s.is_empty()).map(str::as_bytes).collect();
        self.patterns.iter().any(|pat| {
            let psegs: Vec<&[u8]> = pat.split('/').filter(|s| !s.is_empty()).map(str::as_bytes).collect();
            psegs.len() <= segs.len() && psegs.iter().zip(&segs).all(|(p, s)| glob(p, s))
        })
    }
}

/// `*` and `?` over one path segment.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&pat[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&pat[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob(&pat[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules() {
        let e = Excludes::defaults();
        assert!(!e.is_excluded("/proc"));
        assert!(e.is_excluded("/proc/1/maps"));
        assert!(e.is_excluded("/tools"));
        assert!(e.is_excluded("/tools/bin/gcc"));
        assert!(!e.is_excluded("/toolsx"));
        assert!(e.is_excluded("/buildstream"));
        assert!(e.is_excluded("/buildstream-install/usr"));
        assert!(!e.is_excluded("/usr/buildstream"));
        assert!(e.is_excluded("/init"));
        assert!(!e.is_excluded("/initrd.img"));
        assert!(!e.is_excluded("/usr/bin/gcc"));
        assert!(e.is_excluded("/var/lib/stagehand/state.json"));
        assert!(!e.is_excluded("/var/lib"));
    }

    #[test]
    fn add_and_remove() {
        let mut e = Excludes::defaults();
        assert!(e.remove("/tools/"));
        assert!(!e.is_excluded("/tools/bin"));
        e.add("usr/share/doc");
        e.add("/*.inst");
        e.add("/usr/lib/*.a");
        assert!(e.is_excluded("/usr/share/doc/x"));
        assert!(e.is_excluded("/gcc.inst/usr"));
        assert!(e.is_excluded("/usr/lib/libc.a"));
        assert!(!e.is_excluded("/usr/lib/libc.so"));
        assert!(!e.remove("/nothing"));
        e.add("/");
        assert!(!e.is_excluded("/usr"));
    }

    #[test]
    fn glob_segments() {
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*", b""));
    }
}
