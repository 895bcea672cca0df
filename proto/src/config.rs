//! The agent's configuration.
//!
//! Sources, later ones winning key by key:
//! 1. built-in defaults;
//! 2. the JSON file the host tool writes into the image (`/etc/stagehand/agent.json`, or
//!    `--config PATH`, or env `STAGEHAND_CONFIG`, or `stagehand.config=PATH` on the kernel
//!    command line);
//! 3. as PID 1: `stagehand.KEY=VALUE` words of `/proc/cmdline` (the kernel does not hand
//!    dotted parameters to init, so the agent reads the file itself);
//! 4. env `STAGEHAND_KEY=VALUE` (mostly for container mode, where `/proc/cmdline` is the
//!    host's and is not read).
//!
//! A malformed or unknown key never stops the agent: it becomes a warning line and the
//! key keeps its previous value. Every key is documented in `docs/config.md`.

use crate::channel::ChannelSpec;
use crate::ip;
use crate::root::RootSpec;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = crate::paths::CONFIG;
pub const DEFAULT_KEY_PATH: &str = crate::paths::KEY;
pub const DEFAULT_PATH: &str = "/usr/bin:/usr/sbin:/bin:/sbin:/tools/bin:/tools/sbin";

/// How the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decide from the process id: PID 1 means [`Mode::Pid1`].
    Auto,
    /// The first process of a (virtual) machine: mounts, network, reboot at the end.
    Pid1,
    /// A process inside a container or chroot: set up only what is missing, exit at the end.
    Container,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleKind {
    Auto,
    Buildstream,
    Morph,
    Script,
}

/// What the agent does once the run is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndAction {
    Poweroff,
    Reboot,
    Halt,
    /// Run the configured shell on the console, forever (respawned when it exits).
    Shell,
    /// Container mode only: exit with the run's status. As PID 1 it means poweroff.
    Exit,
}

impl EndAction {
    pub fn name(self) -> &'static str {
        match self {
            EndAction::Poweroff => "poweroff",
            EndAction::Reboot => "reboot",
            EndAction::Halt => "halt",
            EndAction::Shell => "shell",
            EndAction::Exit => "exit",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
}

/// The effective configuration. Field order is the canonical order of [`Config::digest`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub mode: Mode,
    pub target: String,
    pub bundle: PathBuf,
    pub bundle_kind: BundleKind,
    pub channel: ChannelSpec,
    pub key_file: PathBuf,
    pub on_success: EndAction,
    pub on_failure: EndAction,
    pub modules: Vec<String>,
    pub ip: Option<String>,
    pub root: Option<RootSpec>,
    pub nameserver: Vec<String>,
    pub hostname: Option<String>,
    pub remount_rw: bool,
    pub state_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub exclude: Vec<String>,
    pub exclude_defaults: bool,
    pub compression: Compression,
    pub gzip_level: u32,
    pub threads: u32,
    pub keep_copy: Option<PathBuf>,
    pub clamp_mtime: Option<u64>,
    pub env: BTreeMap<String, String>,
    pub path: String,
    pub one_way_repeats: u32,
    pub quiet_console: bool,
    pub max_log_bytes: u64,
    pub console: PathBuf,
    pub shell: PathBuf,
    pub stop_grace_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Auto,
            target: String::new(),
            bundle: PathBuf::from(crate::paths::bundle_path(None)),
            bundle_kind: BundleKind::Auto,
            channel: ChannelSpec::default(),
            key_file: PathBuf::from(DEFAULT_KEY_PATH),
            on_success: EndAction::Poweroff,
            on_failure: EndAction::Poweroff,
            modules: Vec::new(),
            ip: None,
            root: None,
            nameserver: Vec::new(),
            hostname: None,
            remount_rw: false,
            state_dir: PathBuf::from(crate::paths::STATE_DIR),
            logs_dir: PathBuf::from(crate::paths::LOGS_DIR),
            exclude: Vec::new(),
            exclude_defaults: true,
            compression: Compression::Gzip,
            gzip_level: 6,
            threads: 0,
            keep_copy: None,
            clamp_mtime: None,
            env: BTreeMap::new(),
            path: DEFAULT_PATH.to_string(),
            one_way_repeats: 2,
            quiet_console: true,
            max_log_bytes: 64 << 20,
            console: PathBuf::from("/dev/console"),
            shell: PathBuf::from("/bin/sh"),
            stop_grace_secs: 10,
        }
    }
}

/// The shape of a key's value, for the text forms (command line, environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Bool,
    Number,
    /// Comma-separated in text form.
    List,
    /// `NAME=VALUE,NAME=VALUE` in text form.
    Map,
}

/// Every key, with its kind. `config` (which file to read) is handled before the others.
const KEYS: &[(&str, Kind)] = &[
    ("mode", Kind::Text),
    ("target", Kind::Text),
    ("bundle", Kind::Text),
    ("bundle_kind", Kind::Text),
    ("channel", Kind::Text),
    ("key_file", Kind::Text),
    ("on_success", Kind::Text),
    ("on_failure", Kind::Text),
    ("modules", Kind::List),
    ("ip", Kind::Text),
    ("root", Kind::Text),
    ("nameserver", Kind::List),
    ("hostname", Kind::Text),
    ("remount_rw", Kind::Bool),
    ("state_dir", Kind::Text),
    ("logs_dir", Kind::Text),
    ("exclude", Kind::List),
    ("exclude_defaults", Kind::Bool),
    ("compression", Kind::Text),
    ("gzip_level", Kind::Number),
    ("threads", Kind::Number),
    ("keep_copy", Kind::Text),
    ("clamp_mtime", Kind::Number),
    ("env", Kind::Map),
    ("path", Kind::Text),
    ("one_way_repeats", Kind::Number),
    ("quiet_console", Kind::Bool),
    ("max_log_bytes", Kind::Number),
    ("console", Kind::Text),
    ("shell", Kind::Text),
    ("stop_grace_secs", Kind::Number),
];

/// All known key names (for documentation checks and messages).
pub fn key_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
}

fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

/// Turn a text form (command line, environment) into the JSON value of that key's kind.
fn text_to_value(kind: Kind, text: &str) -> Value {
    match kind {
        Kind::Text => Value::String(text.to_string()),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "" => Value::Bool(true),
            "0" | "false" | "no" | "off" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Kind::Number => {
            text.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::String(text.to_string()))
        }
        Kind::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        Kind::Map => {
            let mut map = serde_json::Map::new();
            for item in text.split(',').filter(|s| !s.is_empty()) {
                match item.split_once('=') {
                    Some((k, v)) => map.insert(k.to_string(), Value::String(v.to_string())),
                    None => map.insert(item.to_string(), Value::Null),
                };
            }
            Value::Object(map)
        }
    }
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

fn want_str<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("expected {what}, got {}", describe(v)))
}

fn want_path(v: &Value) -> Result<PathBuf, String> {
    let s = want_str(v, "an absolute path")?;
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path"));
    }
    Ok(PathBuf::from(s))
}

fn want_bool(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("expected true or false, got {}", describe(v)))
}

fn want_u64(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}, got {}", describe(v))),
    }
}

fn want_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("expected a list of strings, got {}", describe(v)))
            })
            .collect(),
        _ => Err(format!("expected a list of strings, got {}", describe(v))),
    }
}

fn want_choice<T: Copy>(v: &Value, choices: &[(&str, T)]) -> Result<T, String> {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    Ok(choices[choice_index(v, &names)?].1)
}

/// The one non-generic body of [`want_choice`] (the agent carries one copy, not one per enum).
fn choice_index(v: &Value, names: &[&str]) -> Result<usize, String> {
    let s = want_str(v, "a string")?;
    names.iter().position(|n| *n == s).ok_or_else(|| format!("{s:?} is not one of {}", names.join(", ")))
}

impl std::str::FromStr for EndAction {
    type Err = String;

    fn from_str(s: &str) -> Result<EndAction, String> {
        want_choice(&Value::String(s.to_string()), END_ACTIONS)
    }
}

impl std::fmt::Display for EndAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const END_ACTIONS: &[(&str, EndAction)] = &[
    ("poweroff", EndAction::Poweroff),
    ("reboot", EndAction::Reboot),
    ("halt", EndAction::Halt),
    ("shell", EndAction::Shell),
    ("exit", EndAction::Exit),
];

fn valid_hostname(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("{s:?} is not a host name (1-64 letters, digits, '-' or '.')"));
    }
    Ok(s.to_string())
}

impl Config {
    /// Set one key from a JSON value. On error the key keeps its value.
    pub fn set(&mut self, key: &str, v: &Value) -> Result<(), String> {
        match key {
            "mode" => {
                self.mode = want_choice(
                    v,
                    &[("auto", Mode::Auto), ("pid1", Mode::Pid1), ("container", Mode::Container)],
                )?
            }
            "target" => self.target = want_str(v, "an architecture name")?.to_string(),
            "bundle" => self.bundle = want_path(v)?,
            "bundle_kind" => {
                self.bundle_kind = want_choice(
                    v,
                    &[
                        ("auto", BundleKind::Auto),
                        ("buildstream", BundleKind::Buildstream),
                        ("morph", BundleKind::Morph),
                        ("script", BundleKind::Script),
                    ],
                )?
            }
            "channel" => self.channel = want_str(v, "a channel like serial:/dev/ttyS1,115200")?.parse()?,
            "key_file" => self.key_file = want_path(v)?,
            "on_success" => self.on_success = want_choice(v, END_ACTIONS)?,
            "on_failure" => self.on_failure = want_choice(v, END_ACTIONS)?,
            "modules" => {
                let list = want_list(v)?;
                if let Some(bad) =
                    list.iter().find(|m| m.is_empty() || m.contains('/') || m.contains(char::is_whitespace))
                {
                    return Err(format!("{bad:?} is not a module name"));
                }
                self.modules = list;
            }
            "ip" => {
                let s = want_str(v, "an ip= value")?;
                ip::parse_ip(s)?;
                self.ip = Some(s.to_string()).filter(|s| !s.is_empty());
            }
            "root" => {
                let s = want_str(v, "a root like nfs:10.0.2.2:/export")?;
                self.root = if s.is_empty() { None } else { Some(s.parse()?) };
            }
            "nameserver" => {
                let list = want_list(v)?;
                if let Some(bad) = list.iter().find(|a| a.parse::<std::net::IpAddr>().is_err()) {
                    return Err(format!("{bad:?} is not an IP address"));
                }
                self.nameserver = list;
            }
            "hostname" => {
                let s = want_str(v, "a host name")?;
                self.hostname = if s.is_empty() { None } else { Some(valid_hostname(s)?) };
            }
            "remount_rw" => self.remount_rw = want_bool(v)?,
            "state_dir" => self.state_dir = want_path(v)?,
            "logs_dir" => self.logs_dir = want_path(v)?,
            "exclude" => self.exclude = want_list(v)?,
            "exclude_defaults" => self.exclude_defaults = want_bool(v)?,
            "compression" => {
                self.compression =
                    want_choice(v, &[("none", Compression::None), ("gzip", Compression::Gzip)])?
            }
            "gzip_level" => self.gzip_level = want_u64(v, 0, 9)? as u32,
            "threads" => self.threads = want_u64(v, 0, 1024)? as u32,
            "keep_copy" => {
                self.keep_copy = match v {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    _ => Some(want_path(v)?),
                }
            }
            "clamp_mtime" => {
                self.clamp_mtime = match v {
                    Value::Null => None,
                    _ => Some(want_u64(v, 0, i64::MAX as u64)?),
                }
            }
            "env" => {
                let Value::Object(map) = v else {
                    return Err(format!("expected an object of NAME: VALUE strings, got {}", describe(v)));
                };
                let mut env = BTreeMap::new();
                for (name, value) in map {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        return Err(format!("{name:?} is not an environment variable name"));
                    }
                    let value = value
                        .as_str()
                        .ok_or_else(|| format!("env {name}: expected a string, got {}", describe(value)))?;
                    env.insert(name.clone(), value.to_string());
                }
                self.env = env;
            }
            "path" => {
                let s = want_str(v, "a PATH value")?;
                if s.is_empty() {
                    return Err("PATH cannot be empty".to_string());
                }
                self.path = s.to_string();
            }
            "one_way_repeats" => self.one_way_repeats = want_u64(v, 1, 16)? as u32,
            "quiet_console" => self.quiet_console = want_bool(v)?,
            "max_log_bytes" => self.max_log_bytes = want_u64(v, 0, u64::MAX)?,
            "console" => self.console = want_path(v)?,
            "shell" => self.shell = want_path(v)?,
            "stop_grace_secs" => self.stop_grace_secs = want_u64(v, 0, 3600)? as u32,
            _ => return Err("unknown key".to_string()),
        }
        Ok(())
    }

    /// The JSON value of `key` written as text, the way `stagehand image --set KEY=VALUE`
    /// takes it: JSON when it starts with `[`, `{` or `"` (or is `null`), else the kernel
    /// command line's text form (lists comma-separated, `env` as `NAME=VALUE,...`). Checked
    /// against the schema: the value returned is one [`Config::set`] accepts.
    pub fn value_from_text(key: &str, text: &str) -> Result<Value, String> {
        let kind = kind_of(key).ok_or_else(|| {
            format!("unknown setting {key:?} (known: {})", key_names().collect::<Vec<_>>().join(", "))
        })?;
        let t = text.trim_start();
        let value = if t.starts_with(['[', '{', '"']) || t == "null" {
            serde_json::from_str(text).map_err(|e| format!("{key}: not valid JSON ({e})"))?
        } else {
            text_to_value(kind, text)
        };
        Config::default().set(key, &value).map_err(|e| format!("{key}: {e}"))?;
        Ok(value)
    }

    /// Set one key from its text form (`stagehand.KEY=VALUE`, `STAGEHAND_KEY=VALUE`).
    pub fn set_text(&mut self, key: &str, text: &str) -> Result<(), String> {
        let kind = kind_of(key).ok_or_else(|| "unknown key".to_string())?;
        self.set(key, &text_to_value(kind, text))
    }

    /// Apply a JSON object; problems go to `warnings`.
    pub fn apply_json(&mut self, text: &str, origin: &str, warnings: &mut Vec<String>) {
        let doc: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                warnings.push(format!("{origin}: not valid JSON ({e}); using the defaults instead"));
                return;
            }
        };
        let Value::Object(map) = doc else {
            warnings
                .push(format!("{origin}: expected a JSON object of settings; using the defaults instead"));
            return;
        };
        for (key, value) in &map {
            if key == "config" {
                continue;
            }
            if let Err(e) = self.set(key, value) {
                warnings.push(self.warning(origin, key, &e));
            }
        }
    }

    /// Apply `stagehand.KEY=VALUE` words of a kernel command line.
    pub fn apply_cmdline(&mut self, cmdline: &str, warnings: &mut Vec<String>) {
        for word in split_cmdline(cmdline) {
            let Some(setting) = word.strip_prefix("stagehand.") else { continue };
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            if key == "config" {
                continue;
            }
            if let Some(name) = key.strip_prefix("env.") {
                if name.is_empty() {
                    warnings.push(self.warning("kernel command line", key, "empty variable name"));
                } else {
                    self.env.insert(name.to_string(), value.to_string());
                }
                continue;
            }
            if let Err(e) = self.set_text(key, value) {
                warnings.push(self.warning("kernel command line", key, &e));
            }
        }
    }

    /// Apply `STAGEHAND_KEY=VALUE` environment variables (`STAGEHAND_CONFIG` excluded).
    pub fn apply_env(&mut self, env: &[(String, String)], warnings: &mut Vec<String>) {
        for (name, value) in env {
            let Some(key) = name.strip_prefix("STAGEHAND_") else { continue };
            if key == "CONFIG" {
                continue;
            }
            let key = key.to_ascii_lowercase();
            if let Err(e) = self.set_text(&key, value) {
                warnings.push(self.warning(&format!("environment {name}"), &key, &e));
            }
        }
    }

    fn warning(&self, origin: &str, key: &str, problem: &str) -> String {
        if kind_of(key).is_none() {
            format!(
                "{origin}: unknown setting {key:?} ignored (known: {})",
                key_names().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("{origin}: setting {key}: {problem}; keeping {}", self.value_of(key))
        }
    }

    fn value_of(&self, key: &str) -> String {
        // Through the text form: the JSON writer and the `Value` reader are in the agent
        // already (digest, apply_json); a `Value` serializer of `Config` would add ~KBs.
        let doc: Option<Value> = serde_json::to_string(self).ok().and_then(|t| serde_json::from_str(&t).ok());
        match doc {
            Some(Value::Object(map)) => map.get(key).map(|v| v.to_string()).unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// sha256 (hex) of the canonical JSON of the effective configuration.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The parsed `ip` setting, when there is one that parses.
    pub fn ip_config(&self) -> Option<ip::IpConfig> {
        self.ip.as_deref().and_then(|s| ip::parse_ip(s).ok())
    }

    /// [`Mode::Auto`] resolved against whether this process is PID 1.
    pub fn effective_mode(&self, is_pid1: bool) -> Mode {
        match self.mode {
            Mode::Auto if is_pid1 => Mode::Pid1,
            Mode::Auto => Mode::Container,
            m => m,
        }
    }
}

/// The value of the first `NAME=VALUE` word of a kernel command line.
pub fn cmdline_value(cmdline: &str, name: &str) -> Option<String> {
    split_cmdline(cmdline)
        .into_iter()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
}

/// Split a kernel command line into words; double quotes group (`a="b c"` is one word,
/// quotes removed), as the kernel does.
pub fn split_cmdline(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// The result of [`load_with`]: the configuration and everything worth telling about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// The resolved mode (never [`Mode::Auto`]); also stored in `config.mode`.
    pub mode: Mode,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// One line each; the agent logs them and sends them as warning events.
    pub warnings: Vec<String>,
    /// What it was loaded from (a netbooted agent loads again from its new root).
    pub inputs: Inputs,
}

/// The raw inputs of [`load_with`]; the agent gathers the real ones from its process.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// Command-line arguments, without the program name.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub is_pid1: bool,
    /// `/proc/cmdline`, already read; `None` when it is not to be used.
    pub cmdline: Option<String>,
}

/// Build the effective configuration from `inputs`, reading the config file named by them
/// with `read` (`std::fs::read_to_string` for the real one).
pub fn load_with(inputs: &Inputs, read: impl Fn(&Path) -> std::io::Result<String>) -> Loaded {
    let mut warnings = Vec::new();
    let mut explicit = None;
    let mut args = inputs.args.iter();
    while let Some(a) = args.next() {
        if let Some(p) = a.strip_prefix("--config=") {
            explicit = Some(p.to_string());
        } else if a == "--config" {
            match args.next() {
                Some(p) => explicit = Some(p.clone()),
                None => warnings.push("--config needs a path; ignored".to_string()),
            }
        } else {
            warnings.push(format!("unknown argument {a:?} ignored (the agent takes only --config PATH)"));
        }
    }
    let cmdline_words = inputs.cmdline.as_deref().map(split_cmdline).unwrap_or_default();
    let explicit = explicit
        .or_else(|| inputs.env.iter().find(|(k, _)| k == "STAGEHAND_CONFIG").map(|(_, v)| v.clone()))
        .or_else(|| {
            cmdline_words.iter().find_map(|w| w.strip_prefix("stagehand.config=")).map(str::to_string)
        });

    let mut config = Config::default();
    let path = PathBuf::from(explicit.clone().unwrap_or_else(|| DEFAULT_CONFIG_PATH.to_string()));
    let file = match read(&path) {
        Ok(text) => {
            config.apply_json(&text, &path.display().to_string(), &mut warnings);
            Some(path)
        }
        Err(e) => {
            let why =
                if explicit.is_some() { "the configuration file named" } else { "the configuration file" };
            warnings.push(format!("{why} {} cannot be read ({e}); using built-in defaults", path.display()));
            None
        }
    };
    // The command line is the machine's only when this is its first process.
    if let Some(cmdline) = &inputs.cmdline {
        if inputs.is_pid1 && config.mode != Mode::Container {
            config.apply_cmdline(cmdline, &mut warnings);
            // The kernel's own `ip=` (what netboot recipes write) when no `ip` is set: a
            // kernel without IP autoconfiguration leaves it to init.
            if config.ip.is_none() {
                if let Some(v) = cmdline_value(cmdline, "ip") {
                    if let Err(e) = config.set_text("ip", &v) {
                        warnings.push(config.warning("kernel command line", "ip", &e));
                    }
                }
            }
        }
    }
    config.apply_env(&inputs.env, &mut warnings);
    let mode = config.effective_mode(inputs.is_pid1);
    config.mode = mode;
    Loaded { config, mode, file, warnings, inputs: inputs.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(json: &str) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut w = Vec::new();
        c.apply_json(json, "agent.json", &mut w);
        (c, w)
    }

    #[test]
    fn clamp_mtime_is_a_number_or_null() {
        assert_eq!(apply(r#"{"clamp_mtime":1320937200}"#).0.clamp_mtime, Some(1320937200));
        assert_eq!(apply(r#"{"clamp_mtime":1,"clamp_mtime":null}"#).0.clamp_mtime, None);
        let (c, w) = apply(r#"{"clamp_mtime":"yesterday"}"#);
        assert_eq!((c.clamp_mtime, w.len()), (None, 1));
    }

    #[test]
    fn a_full_file_sets_every_key() {
        let (c, w) = apply(
            r#"{"mode":"pid1","target":"armv8l64","bundle":"/b","bundle_kind":"buildstream",
            "channel":"serial:/dev/ttyS1,115200","key_file":"/k","on_success":"reboot","on_failure":"shell",
            "modules":["e1000","virtio_blk"],"ip":"10.0.2.15::10.0.2.2:255.255.255.0::eth0:off","root":"nfs:10.0.2.2:/export",
            "nameserver":["10.0.2.3"],"hostname":"board-1","remount_rw":true,"state_dir":"/s","logs_dir":"/l",
            "exclude":["/proc","/tmp"],"exclude_defaults":false,"compression":"none","gzip_level":9,"threads":4,
            "keep_copy":"/keep.tar","clamp_mtime":1320937200,"env":{"MAKEFLAGS":"-j2"},"path":"/bin","one_way_repeats":3,
            "quiet_console":false,"max_log_bytes":1000,"console":"/dev/ttyS0","shell":"/bin/bash","stop_grace_secs":3}"#,
        );
        assert_eq!(w, Vec::<String>::new());
        assert_eq!(c.mode, Mode::Pid1);
        assert_eq!(c.bundle_kind, BundleKind::Buildstream);
        assert_eq!(c.channel.to_string(), "serial:/dev/ttyS1,115200");
        assert_eq!((c.on_success, c.on_failure), (EndAction::Reboot, EndAction::Shell));
        assert_eq!(c.modules, vec!["e1000", "virtio_blk"]);
        assert_eq!(c.hostname.as_deref(), Some("board-1"));
        assert_eq!(c.root.as_ref().map(|r| r.to_string()).as_deref(), Some("nfs:10.0.2.2:/export,vers=4.2"));
        assert!(c.remount_rw && !c.exclude_defaults && !c.quiet_console);
        assert_eq!((c.gzip_level, c.threads, c.one_way_repeats, c.max_log_bytes), (9, 4, 3, 1000));
        assert_eq!(c.keep_copy, Some(PathBuf::from("/keep.tar")));
        assert_eq!(c.clamp_mtime, Some(1320937200));
        assert_eq!(c.env.get("MAKEFLAGS").map(String::as_str), Some("-j2"));
        assert_eq!(c.compression, Compression::None);
        assert!(matches!(c.ip_config(), Some(ip::IpConfig::Static(_))));
        // every key of the table was in this document
        let doc: Value = serde_json::to_value(&c).unwrap();
        assert_eq!(doc.as_object().unwrap().len(), KEYS.len());
    }

    #[test]
    fn malformed_values_warn_and_keep_the_default() {
        let (c, w) = apply(
            r#"{"gzip_level":12,"remount_rw":"maybe","channel":"usb:x","on_success":"explode","state_dir":"rel/dir",
            "modules":"e1000","threads":-1,"env":{"A":1},"hostname":"bad name","ip":"dhcp:x:y","frobnicate":1,
            "nameserver":["nope"],"one_way_repeats":0}"#,
        );
        let d = Config::default();
        assert_eq!(c.gzip_level, d.gzip_level);
        assert_eq!(c.remount_rw, d.remount_rw);
        assert_eq!(c.channel, d.channel);
        assert_eq!(c.on_success, d.on_success);
        assert_eq!(c.state_dir, d.state_dir);
        assert_eq!(c.modules, vec!["e1000"], "a single string is a one-item list");
        assert_eq!(c.threads, 0);
        assert!(c.env.is_empty() && c.hostname.is_none() && c.ip.is_none() && c.nameserver.is_empty());
        assert_eq!(c.one_way_repeats, 2);
        assert_eq!(w.len(), 12, "{w:#?}");
        assert!(w
            .iter()
            .any(|l| l.contains("gzip_level") && l.contains("0 to 9") && l.contains("keeping 6")));
        assert!(w.iter().any(|l| l.contains("unknown setting \"frobnicate\"")));
        assert!(w.iter().any(|l| l.contains("state_dir") && l.contains("not an absolute path")));
    }

    #[test]
    fn broken_documents_fall_back_to_defaults() {
        for doc in ["", "{", "[1,2]", "null", "\u{0}\u{ff}", "{\"a\":"] {
            let (c, w) = apply(doc);
            assert_eq!(c, Config::default());
            assert_eq!(w.len(), 1, "{doc:?}: {w:?}");
        }
    }

    #[test]
    fn cmdline_words_override_the_file() {
        let mut c = Config::default();
        let mut w = Vec::new();
        c.apply_cmdline(
            r#"console=ttyS0 quiet stagehand.on_failure=shell stagehand.modules=e1000,virtio_blk stagehand.remount_rw
               stagehand.hostname="b1" stagehand.env.CFLAGS="-O2 -g" stagehand.gzip_level=x stagehand.nokey=1 stagehand.env.=3"#,
            &mut w,
        );
        assert_eq!(c.on_failure, EndAction::Shell);
        assert_eq!(c.modules, vec!["e1000", "virtio_blk"]);
        assert!(c.remount_rw);
        assert_eq!(c.hostname.as_deref(), Some("b1"));
        assert_eq!(c.env.get("CFLAGS").map(String::as_str), Some("-O2 -g"));
        assert_eq!(w.len(), 3, "{w:#?}");
    }

    #[test]
    fn text_values_are_checked_against_the_schema() {
        assert_eq!(
            Config::value_from_text("modules", "e1000,virtio_net").unwrap(),
            serde_json::json!(["e1000", "virtio_net"])
        );
        assert_eq!(Config::value_from_text("modules", r#"["e1000"]"#).unwrap(), serde_json::json!(["e1000"]));
        assert_eq!(Config::value_from_text("hostname", "123").unwrap(), serde_json::json!("123"));
        assert_eq!(Config::value_from_text("gzip_level", "9").unwrap(), serde_json::json!(9));
        assert_eq!(Config::value_from_text("clamp_mtime", "null").unwrap(), Value::Null);
        assert_eq!(
            Config::value_from_text("env", "A=1,B=2").unwrap(),
            serde_json::json!({"A": "1", "B": "2"})
        );
        for (key, text, needle) in [
            ("gzip_level", "12", "0 to 9"),
            ("frobnicate", "1", "unknown setting"),
            ("channel", "console,oneway", "console:,oneway"),
            ("remount_rw", "maybe", "true or false"),
            ("modules", "[1", "not valid JSON"),
        ] {
            let e = Config::value_from_text(key, text).unwrap_err();
            assert!(e.contains(needle), "{key}={text}: {e}");
        }
        assert_eq!("reboot".parse::<EndAction>(), Ok(EndAction::Reboot));
        assert!("explode".parse::<EndAction>().unwrap_err().contains("poweroff, reboot, halt, shell, exit"));
    }

    #[test]
    fn cmdline_values_are_found_by_name() {
        let c = "console=ttyS0 root=/dev/nfs nfsroot=10.0.2.2:/export,vers=4.2 rootwait";
        assert_eq!(cmdline_value(c, "root").as_deref(), Some("/dev/nfs"));
        assert_eq!(cmdline_value(c, "nfsroot").as_deref(), Some("10.0.2.2:/export,vers=4.2"));
        assert_eq!(cmdline_value(c, "rootfstype"), None);
        assert_eq!(cmdline_value(c, "rootwait"), None);
    }

    #[test]
    fn cmdline_splitting_follows_the_kernel() {
        assert_eq!(split_cmdline("  a b=\"c d\"  \"e f\"\n"), vec!["a", "b=c d", "e f"]);
        assert_eq!(split_cmdline(""), Vec::<String>::new());
    }

    #[test]
    fn load_picks_file_then_cmdline_then_env() {
        let inputs = Inputs {
            args: vec!["--config".into(), "/x/agent.json".into()],
            env: vec![
                ("STAGEHAND_ON_SUCCESS".into(), "halt".into()),
                ("STAGEHAND_THREADS".into(), "many".into()),
            ],
            is_pid1: true,
            cmdline: Some("stagehand.hostname=fromcmd stagehand.target=x86_64".into()),
        };
        let l = load_with(&inputs, |p| {
            assert_eq!(p, Path::new("/x/agent.json"));
            Ok(r#"{"target":"armv8l64","hostname":"fromfile","on_success":"reboot"}"#.to_string())
        });
        assert_eq!(l.mode, Mode::Pid1);
        assert_eq!(l.config.target, "x86_64");
        assert_eq!(l.config.hostname.as_deref(), Some("fromcmd"));
        assert_eq!(l.config.on_success, EndAction::Halt);
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("STAGEHAND_THREADS"));
    }

    #[test]
    fn the_kernels_own_ip_word_is_taken_when_no_ip_is_set() {
        let load = |cmdline: &str, file: &'static str, pid1: bool| {
            let inputs = Inputs { is_pid1: pid1, cmdline: Some(cmdline.into()), ..Default::default() };
            load_with(&inputs, |_| Ok(file.to_string()))
        };
        let l = load("console=ttyS0 ip=dhcp", "{}", true);
        assert_eq!(l.config.ip.as_deref(), Some("dhcp"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        // The agent's own settings win over the kernel's word.
        let l = load("ip=dhcp stagehand.ip=off", "{}", true);
        assert_eq!(l.config.ip.as_deref(), Some("off"));
        let l = load("ip=dhcp", r#"{"ip":"10.0.2.15::10.0.2.2:255.255.255.0"}"#, true);
        assert_eq!(l.config.ip.as_deref(), Some("10.0.2.15::10.0.2.2:255.255.255.0"));
        // A bad word is one warning naming it, and no ip; the host's command line is not ours.
        let l = load("ip=10.0.2.15/24", "{}", true);
        assert_eq!(l.config.ip, None);
        assert!(l.warnings.len() == 1 && l.warnings[0].contains("ip"), "{:?}", l.warnings);
        assert_eq!(load("ip=dhcp", "{}", false).config.ip, None);
    }

    #[test]
    fn container_mode_ignores_the_host_cmdline_and_uses_env_config() {
        let inputs = Inputs {
            args: vec![],
            env: vec![("STAGEHAND_CONFIG".into(), "/c.json".into())],
            is_pid1: false,
            cmdline: Some("stagehand.hostname=host".into()),
        };
        let l = load_with(&inputs, |p| {
            assert_eq!(p, Path::new("/c.json"));
            Ok("{}".into())
        });
        assert_eq!(l.mode, Mode::Container);
        assert_eq!(l.config.hostname, None);
        let l = load_with(&Inputs { args: vec!["--bogus".into()], ..Default::default() }, |_| {
            Err(std::io::Error::from_raw_os_error(libc::ENOENT))
        });
        assert_eq!(l.file, None);
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert!(l.warnings[1].contains(DEFAULT_CONFIG_PATH));
    }

    #[test]
    fn digest_is_stable_and_tracks_changes() {
        let a = Config::default();
        assert_eq!(a.digest(), Config::default().digest());
        assert_eq!(a.digest().len(), 64);
        let mut b = Config::default();
        b.set_text("gzip_level", "1").unwrap();
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/config.md");
        for key in key_names() {
            assert!(doc.contains(&format!("### `{key}`")), "docs/config.md lacks a section for {key}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_input_makes_loading_panic(json in ".{0,200}", cmdline in ".{0,200}", key in "[a-z_]{0,20}", value in ".{0,40}") {
            let mut c = Config::default();
            let mut w = Vec::new();
            c.apply_json(&json, "f", &mut w);
            c.apply_cmdline(&cmdline, &mut w);
            c.apply_cmdline(&format!("stagehand.{key}={value}"), &mut w);
            c.apply_env(&[(format!("STAGEHAND_{}", key.to_ascii_uppercase()), value.clone())], &mut w);
            let _ = c.set(&key, &serde_json::json!({ "k": value }));
            prop_assert_eq!(c.digest().len(), 64);
        }

        #[test]
        fn every_key_survives_any_text(idx in 0..KEYS.len(), value in ".{0,60}") {
            let mut c = Config::default();
            let before = c.clone();
            let key = KEYS[idx].0;
            if c.set_text(key, &value).is_err() {
                prop_assert_eq!(c, before, "a rejected value must leave the config as it was");
            }
        }
    }
}
