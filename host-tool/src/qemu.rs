#[derive(clap::Args, Debug)]
pub struct QemuCmd {}
impl QemuCmd { pub fn run(self) -> anyhow::Result<()> { anyhow::bail!("todo") } }
