#[derive(clap::Args, Debug)]
pub struct DemoCmd {}
impl DemoCmd { pub fn run(self) -> anyhow::Result<()> { anyhow::bail!("todo") } }
