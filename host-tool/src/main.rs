mod agent_build;
mod targets;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "stagehand", version, about = "Bring Linux up on a new architecture")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The architecture table.
    Targets(targets::TargetsCmd),
    /// Build the static agent.
    Agent(agent_build::AgentCmd),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Targets(cmd) => cmd.run(),
        Command::Agent(cmd) => cmd.run(),
    };
    if let Err(e) = result {
        eprintln!("stagehand: {e:#}");
        std::process::exit(1);
    }
}
