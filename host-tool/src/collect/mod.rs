#[derive(clap::Args, Debug)]
pub struct CollectCmd {}
impl CollectCmd { pub fn run(self) -> anyhow::Result<()> { anyhow::bail!("todo") } }
