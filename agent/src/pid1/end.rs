//! The end of a run: power off, reboot, halt, a shell kept alive on the console, or (in a
//! container) exit. As PID 1 it never returns.

use super::reaper::{spawn, status, Child};
use crate::config::{EndAction, Mode};
use crate::sys::{RebootKind, Sys};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the end of a run needs to know.
pub struct EndContext<'a> {
    pub sys: &'a dyn Sys,
    pub mode: Mode,
    /// Container mode: the process exit status.
    pub exit_status: i32,
    /// For [`EndAction::Shell`].
    pub shell: PathBuf,
    /// The tty the shell runs on as PID 1.
    pub console: PathBuf,
}

/// What `end` will really do with `action` in `mode` (as written in the Finished event).
pub fn effective_end(action: EndAction, mode: Mode) -> EndAction {
    match (mode, action) {
        (Mode::Pid1, EndAction::Exit) => EndAction::Poweroff,
        (Mode::Pid1, a) => a,
        (_, EndAction::Shell) => EndAction::Shell,
        _ => EndAction::Exit,
    }
}

/// End the run. As PID 1: sync, then poweroff / reboot / halt via `reboot(2)`, or a shell
/// on the console that is respawned forever; if `reboot(2)` fails, sleep forever (still
/// reaping). In container mode: exit with `exit_status` (after the shell, for `shell`).
/// Never returns.
pub fn end(ctx: &EndContext<'_>, action: EndAction) -> ! {
    let action = effective_end(action, ctx.mode);
    if ctx.mode != Mode::Pid1 {
        if action == EndAction::Shell {
            log::info!("starting {} (exit it to end)", ctx.shell.display());
            let _ = status(&mut Command::new(&ctx.shell));
        }
        std::process::exit(ctx.exit_status);
    }
    ctx.sys.sync();
    let kind = match action {
        EndAction::Poweroff | EndAction::Exit => RebootKind::PowerOff,
        EndAction::Reboot => RebootKind::Restart,
        EndAction::Halt => RebootKind::Halt,
        EndAction::Shell => shell_forever(&ctx.shell, &ctx.console),
    };
    log::info!("{}", kind.name());
    if let Err(e) = ctx.sys.reboot(kind) {
        log::error!("reboot(2) for {} failed ({e}); sleeping forever", kind.name());
    }
    sleep_forever()
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn shell_forever(shell: &Path, console: &Path) -> ! {
    let mut failures = 0u32;
    loop {
        match spawn_console_shell(shell, console).and_then(|mut c| c.wait()) {
            Ok(s) => {
                failures = 0;
                log::info!("{} ended ({s}); starting a new one", shell.display());
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                log::warn!("cannot run {} on {} ({e}); retrying", shell.display(), console.display());
            }
        }
        std::thread::sleep(Duration::from_secs(if failures > 3 { 10 } else { 1 }));
    }
}

fn spawn_console_shell(shell: &Path, console: &Path) -> io::Result<Child> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open(console)?;
    let mut cmd = Command::new(shell);
    cmd.stdin(tty.try_clone()?).stdout(tty.try_clone()?).stderr(tty);
    // SAFETY: setsid and ioctl are async-signal-safe; a new session makes the console the
    // shell's controlling terminal so that Ctrl-C and job control work.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 1);
            Ok(())
        });
    }
    spawn(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_actions_map_to_what_each_mode_can_do() {
        assert_eq!(effective_end(EndAction::Exit, Mode::Pid1), EndAction::Poweroff);
        assert_eq!(effective_end(EndAction::Shell, Mode::Pid1), EndAction::Shell);
        assert_eq!(effective_end(EndAction::Reboot, Mode::Container), EndAction::Exit);
        assert_eq!(effective_end(EndAction::Shell, Mode::Container), EndAction::Shell);
    }
}
