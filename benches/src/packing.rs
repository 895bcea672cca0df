//! The agent's packer on a real tree: compression ratio and deflate speed per level.

use stagehand_agent::pack::gzip::ParallelGzip;
use stagehand_agent::pack::{self, GzipOptions, PackOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Pack `root` in memory; returns (content bytes, archive bytes, archive).
pub fn pack_tree(root: &Path, gzip: Option<GzipOptions>) -> io::Result<(u64, Vec<u8>)> {
    let mut opts = PackOptions::new(root);
    opts.gzip = gzip;
    let mut out = Vec::new();
    let rep = pack::pack(&opts, &mut out, &mut |_, _| {}).map_err(|e| io::Error::other(e.0))?;
    Ok((rep.tree_bytes, out))
}

/// Deflate speed and size of the agent's gzip (1 thread) per level, against GNU gzip and
/// pigz -p1 on the same bytes (the first `limit` bytes of the tree's tar).
pub fn levels(root: &Path, limit: usize) -> io::Result<()> {
    let (_, mut tar) = pack_tree(root, None)?;
    tar.truncate(limit);
    let mb = tar.len() as f64 / 1e6;
    println!("deflate-levels: input {:.1} MB (the first bytes of the tree's tar), 1 thread each", mb);
    let tool = |name: &str, args: &[&str]| -> io::Result<()> {
        let t0 = Instant::now();
        let mut child = Command::new(name).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let input = tar.clone();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let mut out = Vec::new();
        child.stdout.take().expect("piped").read_to_end(&mut out)?;
        child.wait()?;
        let _ = feeder.join();
        let s = t0.elapsed().as_secs_f64();
        println!(
            "deflate-levels {name} {}: {:.1} MB/s, {} bytes ({:.2}% of input)",
            args.join(" "),
            mb / s,
            out.len(),
            100.0 * out.len() as f64 / tar.len() as f64
        );
        Ok(())
    };
    tool("gzip", &["-6", "-c"])?;
    tool("pigz", &["-6", "-p", "1", "-c"])?;
    for level in [1u8, 2, 3, 4, 5, 6] {
        let t0 = Instant::now();
        let mut g = ParallelGzip::new(Vec::new(), level, 1);
        g.write_all(&tar)?;
        let out = g.finish()?;
        let s = t0.elapsed().as_secs_f64();
        println!(
            "deflate-levels agent level {level}: {:.1} MB/s, {} bytes ({:.2}% of input)",
            mb / s,
            out.len(),
            100.0 * out.len() as f64 / tar.len() as f64
        );
    }
    Ok(())
}
