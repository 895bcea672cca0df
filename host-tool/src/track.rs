//! `stagehand track`: the BuildStream `tar` source that imports a tarball.

use anyhow::Result;
use std::path::{Path, PathBuf};

/// `stagehand track FILE [--url URL]`
#[derive(clap::Args, Debug)]
pub struct TrackCmd {
    /// The tarball.
    pub file: PathBuf,
    /// URL to put in the snippet (default: file:// and the absolute path).
    #[arg(long)]
    pub url: Option<String>,
}

impl TrackCmd {
    pub fn run(self) -> Result<()> {
        if !self.file.is_file() {
            anyhow::bail!("{} does not exist or is not a file", self.file.display());
        }
        let (sha, _) = crate::util::sha256_file(&self.file)?;
        let url = self.url.unwrap_or_else(|| file_url(&self.file));
        print!("{}", tar_source(&url, &sha));
        Ok(())
    }
}

pub fn file_url(path: &Path) -> String {
    format!("file://{}", crate::util::absolute(path).display())
}

/// A `sources:` entry; `ref` is the sha256 of the tarball file itself.
pub fn tar_source(url: &str, sha256: &str) -> String {
    format!("sources:\n- kind: tar\n  url: {url}\n  ref: {sha256}\n")
}
