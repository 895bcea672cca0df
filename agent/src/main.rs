//! `/init`: a thin shell over [`stagehand_agent::agent`].

use stagehand_agent::config;
use stagehand_agent::pid1;
use stagehand_agent::sys::LinuxSys;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("stagehand-agent {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    stagehand_agent::logger::init();
    // Reading the configuration starts no thread; pid1::install must run before any does.
    let inputs = config::inputs_from_process(&LinuxSys);
    let loaded = config::load(&inputs);
    if loaded.mode == config::Mode::Container && loaded.file.is_none() && inputs.env.is_empty() {
        // Run by hand on a live system, the agent would mount over its /tmp and build
        // into its /: without a configuration there is nothing it was asked to do.
        log::error!(
            "no configuration ({} is missing and no STAGEHAND_* variable is set): \
             this is the stagehand agent, meant to run as /init of an image made by `stagehand image`, \
             or in a chroot of one with --config PATH",
            config::DEFAULT_CONFIG_PATH
        );
        std::process::exit(2);
    }
    match pid1::install(loaded.mode, &LinuxSys) {
        Ok(lines) => lines.iter().for_each(|l| log::info!("{l}")),
        Err(e) => log::warn!("signal set-up failed ({e}); orphans may not be reaped"),
    }
    pid1::install_panic_hook();
    stagehand_agent::agent::run(loaded)
}
