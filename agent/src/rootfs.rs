//! Switching root: the agent, as `rdinit=/init` of a small initramfs, mounts the root the
//! `root` setting names (NFS, 9p, virtiofs, a block device) on `/newroot`, moves `/dev`,
//! `/proc`, `/sys` and `/run` into it, makes it `/` and goes on there as PID 1. Every side
//! effect goes through [`Sys`], so the whole sequence is a tested call list.

use crate::sys::{parse_mountinfo, MountFlags, Sys};
use stagehand_proto::root::RootSpec;
use std::net::Ipv4Addr;
use std::path::Path;

/// Where the new root is mounted before it becomes `/`.
pub const NEW_ROOT: &str = "/newroot";
/// The mounts that move along into the new root (submounts such as /dev/pts move with them).
pub const MOVED: &[&str] = &["/dev", "/proc", "/sys", "/run"];

/// Whether `/` is the initramfs (rootfs, or a tmpfs/ramfs the kernel unpacked into): only
/// then is there a root to switch to.
pub fn in_initramfs(sys: &dyn Sys) -> bool {
    let Ok(text) = sys.read_file(Path::new("/proc/self/mountinfo")) else { return false };
    parse_mountinfo(&String::from_utf8_lossy(&text))
        .iter()
        .rev()
        .find(|(p, _)| p == Path::new("/"))
        .is_some_and(|(_, t)| matches!(t.as_str(), "rootfs" | "tmpfs" | "ramfs"))
}

/// Mount `root` and make it `/`. `client`/`server`: this machine's address and the server
/// the network set-up named (an NFS root without a server uses it). Returns what was done.
pub fn switch(
    sys: &dyn Sys,
    root: &RootSpec,
    client: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Result<Vec<String>, String> {
    let plan = root.mount_plan(client, server)?;
    let new = Path::new(NEW_ROOT);
    let mut done = Vec::new();
    sys.mkdir_all(new, 0o755).map_err(|e| format!("cannot create {NEW_ROOT}: {e}"))?;
    let data = Some(plan.data.as_str()).filter(|d| !d.is_empty());
    sys.mount(&plan.source, new, &plan.fstype, MountFlags::empty(), data).map_err(|e| {
        let hint = match root {
            RootSpec::Nfs { .. } => {
                " (is the NFS server running and exporting it? `stagehand serve nfs` prints the root= it serves; the kernel needs the nfs modules)"
            }
            RootSpec::NineP { .. } | RootSpec::Virtiofs { .. } => " (is the QEMU share's mount tag the same?)",
            RootSpec::Block { .. } => " (does the device exist, and is its driver loaded?)",
        };
        format!("mounting the root {root} ({} {} -o {}): {e}{hint}", plan.fstype, plan.source, plan.data)
    })?;
    done.push(format!("mounted {} {} on {NEW_ROOT}", plan.fstype, plan.source));
    let config = new.join(stagehand_proto::paths::in_image(stagehand_proto::paths::CONFIG));
    if !sys.exists(&config) {
        let _ = sys.umount(new);
        return Err(format!(
            "the root {root} has no {}: export a folder written by `stagehand image --format dir`",
            stagehand_proto::paths::CONFIG
        ));
    }
    for m in MOVED {
        let to = new.join(m.trim_start_matches('/'));
        let _ = sys.mkdir_all(&to, 0o755);
        sys.mount_move(Path::new(m), &to).map_err(|e| format!("moving {m} into the new root: {e}"))?;
    }
    done.push(format!("moved {} into it", MOVED.join(" ")));
    sys.chdir(new).map_err(|e| format!("chdir {NEW_ROOT}: {e}"))?;
    sys.mount_move(new, Path::new("/")).map_err(|e| format!("making {NEW_ROOT} the root: {e}"))?;
    sys.chroot(Path::new(".")).map_err(|e| format!("chroot into the new root: {e}"))?;
    sys.chdir(Path::new("/")).map_err(|e| format!("chdir / in the new root: {e}"))?;
    done.push(format!("switched to {root} as /"));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::RecordingSys;

    fn nfs() -> RootSpec {
        "nfs::/export,port=41000".parse().unwrap()
    }

    #[test]
    fn an_nfs_root_is_mounted_the_mounts_moved_and_the_root_switched_in_order() {
        let sys = RecordingSys::new();
        sys.add_file("/newroot/etc/stagehand/agent.json", "{}");
        let done = switch(&sys, &nfs(), "10.0.2.15".parse().ok(), "10.0.2.2".parse().ok()).unwrap();
        assert_eq!(
            sys.calls(),
            [
                "mkdir /newroot 755",
                "mount nfs4 /newroot source=10.0.2.2:/export flags=(empty) data=vers=4.2,proto=tcp,port=41000,clientaddr=10.0.2.15,addr=10.0.2.2",
                "mkdir /newroot/dev 755",
                "mount --move /dev /newroot/dev",
                "mkdir /newroot/proc 755",
                "mount --move /proc /newroot/proc",
                "mkdir /newroot/sys 755",
                "mount --move /sys /newroot/sys",
                "mkdir /newroot/run 755",
                "mount --move /run /newroot/run",
                "chdir /newroot",
                "mount --move /newroot /",
                "chroot .",
                "chdir /",
            ]
        );
        assert_eq!(done.len(), 3);
    }

    #[test]
    fn failures_say_what_and_what_to_check() {
        let sys = RecordingSys::new();
        sys.fail("mount nfs4", libc::ECONNREFUSED);
        let e = switch(&sys, &nfs(), "10.0.2.15".parse().ok(), "10.0.2.2".parse().ok()).unwrap_err();
        assert!(e.contains("mounting the root nfs::/export") && e.contains("stagehand serve nfs"), "{e}");
        assert!(!sys.calls().iter().any(|c| c.starts_with("chroot")));

        // a folder that is not an image: nothing is switched, the mount is undone
        let sys = RecordingSys::new();
        let e = switch(&sys, &nfs(), "10.0.2.15".parse().ok(), "10.0.2.2".parse().ok()).unwrap_err();
        assert!(e.contains("has no /etc/stagehand/agent.json") && e.contains("--format dir"), "{e}");
        assert_eq!(sys.calls().last().map(String::as_str), Some("umount /newroot"));

        let e = switch(&RecordingSys::new(), &nfs(), None, None).unwrap_err();
        assert!(e.contains("no NFS server"), "{e}");
    }

    #[test]
    fn a_9p_root_needs_no_network() {
        let sys = RecordingSys::new();
        sys.add_file("/newroot/etc/stagehand/agent.json", "{}");
        switch(&sys, &"9p:rootfs".parse().unwrap(), None, None).unwrap();
        assert_eq!(
            sys.calls()[1],
            "mount 9p /newroot source=rootfs flags=(empty) data=trans=virtio,version=9p2000.L,msize=512000"
        );
    }

    #[test]
    fn only_an_initramfs_is_switched_away_from() {
        let sys = RecordingSys::new();
        sys.add_file(
            "/proc/self/mountinfo",
            "1 0 0:1 / / rw - rootfs rootfs rw\n22 1 0:21 / /proc rw - proc proc rw\n",
        );
        assert!(in_initramfs(&sys));
        sys.add_file(
            "/proc/self/mountinfo",
            "1 0 0:1 / / rw - rootfs rootfs rw\n30 1 0:40 / / rw - nfs4 10.0.2.2:/e rw\n",
        );
        assert!(!in_initramfs(&sys));
        sys.add_file("/proc/self/mountinfo", "25 1 254:0 / / rw - ext4 /dev/vda rw\n");
        assert!(!in_initramfs(&sys));
        assert!(!in_initramfs(&RecordingSys::new()));
    }
}
