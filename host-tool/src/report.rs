#[derive(clap::Args, Debug)]
pub struct ReportCmd {}
impl ReportCmd { pub fn run(self) -> anyhow::Result<()> { anyhow::bail!("todo") } }
