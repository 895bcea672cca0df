//! `stagehand stage2`: cross-build the stage 2 sysroot with BuildStream (or take an
//! existing one), check it out and fix it up.

use anyhow::Result;
use std::path::PathBuf;

/// `stagehand stage2 --target ARCH --project DIR [--element E] --out DIR`
#[derive(clap::Args, Debug)]
pub struct Stage2Cmd {
    /// Baserock architecture name (x86_64, armv8l64, ppc64b, ...).
    #[arg(long, value_name = "ARCH")]
    pub target: String,
    /// BuildStream project folder (holds project.conf).
    #[arg(long, value_name = "DIR", required_unless_present = "from")]
    pub project: Option<PathBuf>,
    /// Element that makes the stage 2 sysroot.
    #[arg(long, default_value = "bootstrap/stage2-sysroot.bst")]
    pub element: String,
    /// Take this sysroot instead of building one: a folder or a tarball (bst checkout,
    /// Morph cross-bootstrap tarball, debootstrap --foreign tree).
    #[arg(long, value_name = "PATH", conflicts_with = "project")]
    pub from: Option<PathBuf>,
    /// Write the /etc/resolv.conf of the sysroot with this name server.
    #[arg(long, value_name = "IP")]
    pub nameserver: Option<std::net::IpAddr>,
    /// Folder to write the sysroot to (must not exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

impl Stage2Cmd {
    pub fn run(self) -> Result<()> {
        let arch = crate::platform::arch(&self.target)?;
        if let Some(from) = &self.from {
            if std::fs::symlink_metadata(from).is_err() {
                anyhow::bail!("sysroot {} does not exist", from.display());
            }
            crate::util::claim_output(&self.out, self.force)?;
            crate::sysroot::install(from, &self.out)?;
        } else {
            let project_dir = self.project.as_ref().expect("clap requires --project without --from");
            let bst = crate::bst::require_bst()?;
            let project = crate::bst::Project::open(project_dir)?;
            project.require_element(&self.element)?;
            project.require_arch(&arch.bst_arch)?;
            crate::util::claim_output(&self.out, self.force)?;
            crate::bst::ensure_cache_dir()?;
            let out_abs = crate::util::absolute(&self.out);
            crate::bst::run(&bst, project_dir, &arch.bst_arch, &["build".as_ref(), self.element.as_ref()])?;
            crate::bst::run(
                &bst,
                project_dir,
                &arch.bst_arch,
                &["checkout".as_ref(), self.element.as_ref(), out_abs.as_os_str()],
            )?;
        }
        let changes = crate::fixup::fixup(&self.out, self.nameserver)?;
        crate::fixup::print_changes(&self.out, &changes);
        println!("stage 2 sysroot for {} ready in {}", arch.name, self.out.display());
        Ok(())
    }
}
