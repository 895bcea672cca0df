//! Arbitrary text into every configuration parser the agent reads at boot: the JSON file,
//! the kernel command line, the environment, channel specs and `ip=` values. None may
//! panic (the agent is PID 1); the digest of whatever results must stay computable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagehand_proto::channel::ChannelSpec;
use stagehand_proto::config::Config;
use stagehand_proto::ip::parse_ip;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut warnings = Vec::new();
    let mut cfg = Config::default();
    cfg.apply_json(&text, "fuzz", &mut warnings);
    cfg.apply_cmdline(&text, &mut warnings);
    let env: Vec<(String, String)> =
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    cfg.apply_env(&env, &mut warnings);
    let _ = cfg.digest();
    let _ = cfg.ip_config();
    let _ = text.parse::<ChannelSpec>();
    let _ = parse_ip(&text);
});
