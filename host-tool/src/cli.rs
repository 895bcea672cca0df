//! The command tree (clap) and the exit codes: glue between the command line and the
//! verbs' modules. Decides nothing itself.

use crate::{
    agent_build, bundle, collect, demo, fixup, image, qemu, report, serve, stage2, targets, track, util,
};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "stagehand",
    version,
    about = "Bring Linux up on a new architecture",
    after_help = "Exit status: 0 success, 1 usage or setup error, 2 the build failed on the target, \
                  3 the transfer failed or did not verify."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The architecture table.
    Targets(targets::cmd::TargetsCmd),
    /// Build the static agent.
    Agent(agent_build::AgentCmd),
    /// Cross-build (bst build + checkout) or take a stage 2 sysroot, then fix it up.
    Stage2(stage2::Stage2Cmd),
    /// Fix up a stage 2 sysroot: real /usr/bin, mount points, resolv.conf. Idempotent.
    Fixup(fixup::FixupCmd),
    /// Make the stage 3 build bundle (bst source-bundle) or check and copy a given one.
    Bundle(bundle::BundleCmd),
    /// Write a bootable image: sysroot + agent as /init + config + bundle + fresh key.
    Image(image::ImageCmd),
    /// Serve an image folder to netbooted boards (NFS, with nfs-ganesha), until Ctrl-C.
    Serve(serve::ServeCmd),
    /// Receive progress, logs and the verified sysroot tarball from a running agent.
    Collect(collect::CollectCmd),
    /// Print the BuildStream tar source (kind, url, ref) for a tarball.
    Track(track::TrackCmd),
    /// Boot an image under QEMU (TCG) and collect from it in one go.
    Qemu(qemu::QemuCmd),
    /// Summarise a collected run and write DIR/report.html.
    Report(report::ReportCmd),
    /// One-command demonstration on x86_64 under QEMU.
    Demo(demo::DemoCmd),
}

/// Parse the command line, run the verb, exit with its status.
pub fn main() -> ! {
    crate::logging::init();
    // Usage errors exit with 1 (2 means a failed build); --help and --version with 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
                // A value the contract refuses: its one line says what is wrong and the fix.
                let text = e.render().to_string();
                eprintln!("stagehand: {}", text.lines().next().unwrap_or("").trim_start_matches("error: "));
            } else {
                let _ = e.print();
            }
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Targets(cmd) => cmd.run(),
        Command::Agent(cmd) => cmd.run(),
        Command::Stage2(cmd) => cmd.run(),
        Command::Fixup(cmd) => cmd.run(),
        Command::Bundle(cmd) => cmd.run(),
        Command::Image(cmd) => cmd.run(),
        Command::Serve(cmd) => cmd.run(),
        Command::Collect(cmd) => cmd.run(),
        Command::Track(cmd) => cmd.run(),
        Command::Qemu(cmd) => cmd.run(),
        Command::Report(cmd) => cmd.run(),
        Command::Demo(cmd) => cmd.run(),
    };
    if let Err(e) = result {
        let code = e.downcast_ref::<util::Exit>().map(|x| x.code).unwrap_or(1);
        eprintln!("stagehand: {e:#}");
        std::process::exit(code);
    }
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
