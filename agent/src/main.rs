//! `/init`: a thin shell over [`stagehand_agent::agent`].

use stagehand_agent::config;
use stagehand_agent::pid1;
use stagehand_agent::sys::LinuxSys;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("stagehand-agent {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // Reading the configuration starts no thread; pid1::install must run before any does.
    let loaded = config::load(&config::Inputs::from_process());
    match pid1::install(loaded.mode, &LinuxSys) {
        Ok(lines) => lines.iter().for_each(|l| eprintln!("stagehand-agent: {l}")),
        Err(e) => eprintln!("stagehand-agent: signal set-up failed ({e}); orphans may not be reaped"),
    }
    pid1::install_panic_hook();
    stagehand_agent::agent::run(loaded)
}
