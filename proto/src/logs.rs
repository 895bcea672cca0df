//! How a module's log is named, on the target (under `logs_dir`) and on the host (under
//! `<out>/logs/`): `NN-name.log`, `NN` counting from 1 in plan order.

/// Longest name part kept: file systems allow 255 bytes, and the host may add a session
/// suffix (`.2.log`) to a module log of a later boot.
pub const MAX_NAME: usize = 200;

/// `name` with anything but ASCII letters, digits and `-_.+` replaced by `_`, cut to
/// [`MAX_NAME`] characters: safe as one path component on every file system.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .take(MAX_NAME)
        .map(|c| if c.is_ascii_alphanumeric() || "-_.+".contains(c) { c } else { '_' })
        .collect();
    match s.as_str() {
        "" => "_".to_string(),
        "." | ".." => s.replace('.', "_"),
        _ => s,
    }
}

/// The log file name of the module at `index` (from 0) of the plan.
pub fn module_log_name(index: usize, name: &str) -> String {
    format!("{:02}-{}.log", index + 1, sanitize(name))
}

/// The agent's own log, on the host.
pub const AGENT_LOG: &str = "agent.log";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_component() {
        assert_eq!(module_log_name(0, "hello"), "01-hello.log");
        assert_eq!(module_log_name(11, "gnu-toolchain/gcc.bst"), "12-gnu-toolchain_gcc.bst.log");
        assert_eq!(module_log_name(2, "../../etc/passwd"), "03-.._.._etc_passwd.log");
        assert_eq!(module_log_name(0, ""), "01-_.log");
        assert_eq!(module_log_name(0, ".."), "01-__.log");
        let long = module_log_name(0, &"x".repeat(300));
        assert!(long.len() < 255 && !long.contains('/'), "{}", long.len());
    }

    proptest::proptest! {
        #[test]
        fn any_name_gives_one_short_component(name in "\\PC{0,300}") {
            let n = module_log_name(99, &name);
            proptest::prop_assert!(n.len() <= 255 - 8 && !n.contains('/') && n != "." && n != "..");
        }
    }
}
