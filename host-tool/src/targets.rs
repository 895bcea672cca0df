//! The architecture table: one definition per architecture under `targets/`.

/// `stagehand targets [--json] [resolve UNAME_M]`
#[derive(clap::Args, Debug)]
pub struct TargetsCmd {}

impl TargetsCmd {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("stagehand targets: not implemented yet")
    }
}
