//! `stagehand agent build`: the static agent for a target's Rust triple.

/// `stagehand agent build --target ARCH [--out FILE]`
#[derive(clap::Args, Debug)]
pub struct AgentCmd {}

impl AgentCmd {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("stagehand agent: not implemented yet")
    }
}
