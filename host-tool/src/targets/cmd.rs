//! `stagehand targets`: the verb over the table, its resolution and its rendering.

use super::render::{resolution_text, show_text, table_text};
use super::resolve::resolve;
use super::{all, lookup};
use std::path::PathBuf;

/// `stagehand targets [--json] [show NAME | resolve UNAME_M [--elf FILE]]`
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TargetsCmd {
    /// Print every field of every target as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<TargetsAction>,
}

#[derive(clap::Subcommand, Debug)]
enum TargetsAction {
    /// Every field of one target.
    Show {
        /// Baserock name (armv8l64, ppc64l, ...).
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Which target(s) a `uname -m` value means.
    Resolve {
        /// What `uname -m` prints on the machine.
        uname_m: String,
        /// A native binary of that machine (e.g. its /bin/sh): its ELF header decides
        /// endianness and, for 32-bit ARM, the float ABI (Tag_ABI_VFP_args).
        #[arg(long, value_name = "FILE")]
        elf: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

impl TargetsCmd {
    pub fn run(self) -> anyhow::Result<()> {
        match self.action {
            None if self.json => println!("{}", serde_json::to_string_pretty(all()?)?),
            None => print!("{}", table_text(all()?)),
            Some(TargetsAction::Show { name, json }) => {
                let t = lookup(&name)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&t)?);
                } else {
                    print!("{}", show_text(&t));
                }
            }
            Some(TargetsAction::Resolve { uname_m, elf, json }) => {
                let r = resolve(&uname_m, elf.as_deref())?;
                if let Some(advice) = &r.ambiguity {
                    log::warn!("{advice}");
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    print!("{}", resolution_text(&r));
                }
            }
        }
        Ok(())
    }
}
