//! `/init`: a thin shell over the library. The build run itself is wired in by
//! [`stagehand_agent::agent`]; until then this boots, reports and ends as configured.

use stagehand_agent::config::{self, Mode};
use stagehand_agent::pid1::{self, EndContext};
use stagehand_agent::{boot, sys::LinuxSys};

fn say(line: &str) {
    eprintln!("stagehand-agent: {line}");
}

fn main() {
    // Reading the configuration starts no thread; pid1::install must run before any does.
    let loaded = config::load(&config::Inputs::from_process());
    let sys = LinuxSys;
    match pid1::install(loaded.mode, &sys) {
        Ok(lines) => lines.iter().for_each(|l| say(l)),
        Err(e) => say(&format!("signal set-up failed ({e}); orphans may not be reaped")),
    }
    pid1::install_panic_hook();
    loaded.warnings.iter().for_each(|w| say(w));
    let cfg = &loaded.config;
    let ok = pid1::guard(|| {
        let opts = boot::BootOptions::from_config(cfg, loaded.mode);
        boot::boot(&sys, &opts, &mut |step| say(&step.line())).ok()
    });
    let action = match &ok {
        Ok(true) => cfg.on_success,
        Ok(false) => cfg.on_failure,
        Err(e) => {
            say(e);
            cfg.on_failure
        }
    };
    let ctx = EndContext {
        sys: &sys,
        mode: loaded.mode,
        exit_status: if ok == Ok(true) { 0 } else { 1 },
        shell: cfg.shell.clone(),
        console: cfg.console.clone(),
    };
    if loaded.mode == Mode::Container && ok == Ok(true) {
        say("container mode: boot done");
    }
    pid1::end(&ctx, action)
}
