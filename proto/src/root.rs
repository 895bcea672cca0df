//! The `root` setting: the file system the agent mounts and switches to when it runs as
//! `rdinit=/init` of a small initramfs (netboot), and how it is mounted with mount(2).
//!
//! Text forms:
//! - `nfs:[SERVER]:/PATH[,vers=4.2|4.1|4|3][,port=N][,mountport=N][,OPTION...]`: NFS over
//!   TCP. `SERVER` is an IPv4 address (the kernel's NFS client takes no host names), or
//!   empty for the DHCP server / the `ip=` server field. Version 4.2 by default (one TCP
//!   port, no portmapper); version 3 needs `port` and `mountport` (no portmapper either).
//! - `9p:TAG[,OPTION...]`: a QEMU host folder (`-virtfs ...,mount_tag=TAG`).
//! - `virtiofs:TAG`: a virtiofsd share.
//! - `block:DEV[,fstype=ext4][,OPTION...]`: a block device (`DEV` like `/dev/vda` or `vda`).
//!
//! The kernel's own spelling is understood too ([`RootSpec::from_kernel_words`]):
//! `root=/dev/nfs nfsroot=[SERVER:]/PATH[,OPTIONS]`, `root=/dev/vda rootfstype=ext4`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The NFS port when none is given.
pub const NFS_PORT: u16 = 2049;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSpec {
    Nfs {
        /// `None`: the server the network set-up named (DHCP server, `ip=` server field).
        server: Option<Ipv4Addr>,
        path: String,
        /// `3`, `4`, `4.1`, `4.2`.
        version: String,
        port: Option<u16>,
        mountport: Option<u16>,
        /// Further mount options, passed through.
        options: Vec<String>,
    },
    NineP {
        tag: String,
        options: Vec<String>,
    },
    Virtiofs {
        tag: String,
    },
    Block {
        device: String,
        fstype: String,
        options: Vec<String>,
    },
}

/// What mount(2) is called with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    pub source: String,
    pub fstype: String,
    /// The text options (`data` argument).
    pub data: String,
}

fn split_opts(rest: &str) -> (&str, Vec<String>) {
    let mut parts = rest.split(',');
    let head = parts.next().unwrap_or("");
    (head, parts.filter(|o| !o.is_empty()).map(str::to_string).collect())
}

fn check_opt(s: &str, o: &str) -> Result<(), String> {
    if o.contains(char::is_whitespace) || o.contains('\0') {
        return Err(format!("root {s:?}: option {o:?} has a space in it"));
    }
    Ok(())
}

impl FromStr for RootSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<RootSpec, String> {
        let s = s.trim();
        let usage = "use nfs:SERVER:/PATH, 9p:TAG, virtiofs:TAG or block:/dev/vda";
        let (kind, rest) = s.split_once(':').ok_or_else(|| format!("root {s:?}: {usage}"))?;
        match kind {
            "nfs" => {
                let (server, rest) =
                    rest.split_once(':').ok_or_else(|| format!("root {s:?}: expected nfs:SERVER:/PATH"))?;
                let server = match server {
                    "" => None,
                    a => Some(a.parse::<Ipv4Addr>().map_err(|_| {
                        format!("root {s:?}: the NFS server {a:?} must be an IPv4 address (the kernel does not resolve names)")
                    })?),
                };
                let (path, opts) = split_opts(rest);
                if !path.starts_with('/') {
                    return Err(format!(
                        "root {s:?}: the export {path:?} must be an absolute path, like /export"
                    ));
                }
                let (mut version, mut port, mut mountport, mut options) =
                    ("4.2".to_string(), None, None, Vec::new());
                for o in opts {
                    check_opt(s, &o)?;
                    let num = |v: &str| {
                        v.parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or_else(|| format!("root {s:?}: {o:?} needs a port number 1-65535"))
                    };
                    match o.split_once('=') {
                        Some(("vers" | "nfsvers", v)) if ["3", "4", "4.0", "4.1", "4.2"].contains(&v) => {
                            version = v.to_string()
                        }
                        Some(("vers" | "nfsvers", v)) => {
                            return Err(format!("root {s:?}: NFS version {v:?} is not one of 3, 4, 4.1, 4.2"))
                        }
                        Some(("port", v)) => port = Some(num(v)?),
                        Some(("mountport", v)) => mountport = Some(num(v)?),
                        Some(("addr" | "clientaddr" | "proto", _)) => {
                            return Err(format!("root {s:?}: {o:?} is set by the agent (TCP, the server and this machine's address)"))
                        }
                        _ if o == "udp" => {
                            return Err(format!("root {s:?}: NFS over UDP is not supported (Debian's kernels disable it): drop \"udp\""))
                        }
                        _ => options.push(o),
                    }
                }
                if version == "3" && (port.is_none() || mountport.is_none()) {
                    return Err(format!(
                        "root {s:?}: NFSv3 without a portmapper needs port=N and mountport=N (stagehand serve nfs prints them), or use vers=4.2"
                    ));
                }
                Ok(RootSpec::Nfs { server, path: path.to_string(), version, port, mountport, options })
            }
            "9p" | "virtiofs" => {
                let (tag, options) = split_opts(rest);
                if tag.is_empty() || tag.len() > 31 || tag.contains('/') {
                    return Err(format!(
                        "root {s:?}: name the mount tag (1-31 characters), like {kind}:rootfs"
                    ));
                }
                for o in &options {
                    check_opt(s, o)?;
                }
                if kind == "virtiofs" {
                    if !options.is_empty() {
                        return Err(format!("root {s:?}: virtiofs takes no options"));
                    }
                    return Ok(RootSpec::Virtiofs { tag: tag.to_string() });
                }
                Ok(RootSpec::NineP { tag: tag.to_string(), options })
            }
            "block" => {
                let (dev, opts) = split_opts(rest);
                let device = match dev {
                    "" => return Err(format!("root {s:?}: name the device, like block:/dev/vda")),
                    d if d.starts_with("/dev/") => d.to_string(),
                    d if !d.contains('/') => format!("/dev/{d}"),
                    d => return Err(format!("root {s:?}: {d:?} is not a device under /dev")),
                };
                let mut fstype = "ext4".to_string();
                let mut options = Vec::new();
                for o in opts {
                    check_opt(s, &o)?;
                    match o.strip_prefix("fstype=") {
                        Some(t) if !t.is_empty() => fstype = t.to_string(),
                        Some(_) => return Err(format!("root {s:?}: fstype= needs a type, like ext4")),
                        None => options.push(o),
                    }
                }
                Ok(RootSpec::Block { device, fstype, options })
            }
            _ => Err(format!("root {s:?}: unknown kind {kind:?}; {usage}")),
        }
    }
}

impl fmt::Display for RootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opts = |f: &mut fmt::Formatter<'_>, o: &[String]| o.iter().try_for_each(|x| write!(f, ",{x}"));
        match self {
            RootSpec::Nfs { server, path, version, port, mountport, options } => {
                write!(f, "nfs:{}:{path},vers={version}", server.map(|s| s.to_string()).unwrap_or_default())?;
                if let Some(p) = port {
                    write!(f, ",port={p}")?;
                }
                if let Some(p) = mountport {
                    write!(f, ",mountport={p}")?;
                }
                opts(f, options)
            }
            RootSpec::NineP { tag, options } => {
                write!(f, "9p:{tag}")?;
                opts(f, options)
            }
            RootSpec::Virtiofs { tag } => write!(f, "virtiofs:{tag}"),
            RootSpec::Block { device, fstype, options } => {
                write!(f, "block:{device},fstype={fstype}")?;
                opts(f, options)
            }
        }
    }
}

impl serde::Serialize for RootSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl RootSpec {
    /// The kernel's spelling: the values of `root=`, `nfsroot=` and `rootfstype=` (each
    /// `None` when absent). `None` when they name no root the agent should mount.
    pub fn from_kernel_words(
        root: Option<&str>,
        nfsroot: Option<&str>,
        rootfstype: Option<&str>,
    ) -> Option<Result<RootSpec, String>> {
        match root? {
            "/dev/nfs" => {
                let Some(nfsroot) = nfsroot else {
                    return Some(Err("root=/dev/nfs needs nfsroot=[SERVER:]/PATH[,OPTIONS]".to_string()));
                };
                // nfsroot=[SERVER:]/PATH[,OPTIONS]; the kernel's default version is 3, but
                // a portless v3 needs a portmapper: without vers= the agent uses 4.2.
                let (server, rest) = match nfsroot.split_once(":/") {
                    Some((s, p)) => (s, format!("/{p}")),
                    None => ("", nfsroot.to_string()),
                };
                Some(format!("nfs:{server}:{rest}").parse())
            }
            r if r.starts_with("/dev/") => {
                let fstype = rootfstype.unwrap_or("ext4");
                Some(format!("block:{r},fstype={fstype}").parse())
            }
            _ => None,
        }
    }

    /// Kernel modules this root needs (their dependencies come from modules.dep).
    pub fn modules(&self) -> &'static [&'static str] {
        match self {
            RootSpec::Nfs { version, .. } if version == "3" => &["nfsv3"],
            RootSpec::Nfs { .. } => &["nfsv4"],
            RootSpec::NineP { .. } => &["9pnet_virtio", "9p"],
            RootSpec::Virtiofs { .. } => &["virtiofs"],
            RootSpec::Block { fstype, .. } if fstype == "ext4" => &["ext4"],
            RootSpec::Block { .. } => &[],
        }
    }

    /// Whether the network must be up before the root can be mounted.
    pub fn needs_network(&self) -> bool {
        matches!(self, RootSpec::Nfs { .. })
    }

    /// The mount(2) call for this root. `client` is this machine's address, `server` the
    /// one the network set-up named (for an NFS root without a server).
    pub fn mount_plan(
        &self,
        client: Option<Ipv4Addr>,
        server: Option<Ipv4Addr>,
    ) -> Result<MountPlan, String> {
        Ok(match self {
            RootSpec::Nfs { server: given, path, version, port, mountport, options } => {
                let s = given.or(server).ok_or_else(|| {
                    format!("root {self}: no NFS server: name it (nfs:SERVER:{path}) or get one from DHCP (ip=dhcp)")
                })?;
                let client = client.ok_or_else(|| {
                    format!("root {self}: this machine has no IPv4 address: set ip=dhcp or a static ip=")
                })?;
                let mut data = vec![format!("vers={version}"), "proto=tcp".to_string()];
                data.push(format!("port={}", port.unwrap_or(NFS_PORT)));
                if version == "3" {
                    data.push(format!("mountport={}", mountport.unwrap_or(0)));
                    data.extend(["mountproto=tcp".to_string(), "nolock".to_string()]);
                    data.push(format!("mountaddr={s}"));
                } else {
                    data.push(format!("clientaddr={client}"));
                }
                data.push(format!("addr={s}"));
                data.extend(options.iter().cloned());
                let fstype = if version == "3" { "nfs" } else { "nfs4" };
                MountPlan { source: format!("{s}:{path}"), fstype: fstype.to_string(), data: data.join(",") }
            }
            RootSpec::NineP { tag, options } => {
                let mut data = vec!["trans=virtio".to_string(), "version=9p2000.L".to_string()];
                if !options.iter().any(|o| o.starts_with("msize=")) {
                    data.push("msize=512000".to_string());
                }
                data.extend(options.iter().cloned());
                MountPlan { source: tag.clone(), fstype: "9p".into(), data: data.join(",") }
            }
            RootSpec::Virtiofs { tag } => {
                MountPlan { source: tag.clone(), fstype: "virtiofs".into(), data: String::new() }
            }
            RootSpec::Block { device, fstype, options } => {
                MountPlan { source: device.clone(), fstype: fstype.clone(), data: options.join(",") }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RootSpec {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "nfs:10.0.2.2:/export,vers=4.2",
            "nfs::/srv/root,vers=4.1,port=20490",
            "nfs:10.0.2.2:/srv/root,vers=3,port=2049,mountport=20048,timeo=600",
            "9p:rootfs",
            "9p:root,cache=loose",
            "virtiofs:root",
            "block:/dev/vda,fstype=ext4",
            "block:/dev/mmcblk0p2,fstype=btrfs,noatime",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert_eq!(p("nfs:10.0.2.2:/export").to_string(), "nfs:10.0.2.2:/export,vers=4.2");
        assert_eq!(p("block:vda").to_string(), "block:/dev/vda,fstype=ext4");
    }

    #[test]
    fn bad_roots_say_what_is_wrong() {
        for (s, needle) in [
            ("nfs:server.lab:/export", "IPv4 address"),
            ("nfs:10.0.2.2:export", "absolute path"),
            ("nfs:10.0.2.2:/e,vers=2", "not one of"),
            ("nfs:10.0.2.2:/e,vers=3", "mountport"),
            ("nfs:10.0.2.2:/e,port=0", "port number"),
            ("nfs:10.0.2.2:/e,addr=1.2.3.4", "set by the agent"),
            ("nfs:10.0.2.2:/e,udp", "UDP"),
            ("nfs:10.0.2.2", "nfs:SERVER:/PATH"),
            ("9p:", "mount tag"),
            ("virtiofs:root,x", "no options"),
            ("block:", "name the device"),
            ("block:dev/vda", "not a device"),
            ("iscsi:x", "unknown kind"),
            ("nfs", "use nfs:"),
        ] {
            let e = s.parse::<RootSpec>().unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn nfs_mount_options_are_complete_for_the_kernel() {
        let (c, s) = ("10.0.2.15".parse().ok(), "10.0.2.2".parse().ok());
        let v4 = p("nfs::/export,port=41000").mount_plan(c, s).unwrap();
        assert_eq!(v4.source, "10.0.2.2:/export");
        assert_eq!(v4.fstype, "nfs4");
        assert_eq!(v4.data, "vers=4.2,proto=tcp,port=41000,clientaddr=10.0.2.15,addr=10.0.2.2");
        let v3 = p("nfs:10.0.2.9:/srv,vers=3,port=2049,mountport=20048,timeo=600").mount_plan(c, s).unwrap();
        assert_eq!(v3.source, "10.0.2.9:/srv");
        assert_eq!(v3.fstype, "nfs");
        assert_eq!(
            v3.data,
            "vers=3,proto=tcp,port=2049,mountport=20048,mountproto=tcp,nolock,mountaddr=10.0.2.9,addr=10.0.2.9,timeo=600"
        );
        assert!(p("nfs::/e").mount_plan(c, None).unwrap_err().contains("no NFS server"));
        assert!(p("nfs::/e").mount_plan(None, s).unwrap_err().contains("ip=dhcp"));
        let nine = p("9p:rootfs").mount_plan(None, None).unwrap();
        assert_eq!((nine.source.as_str(), nine.fstype.as_str()), ("rootfs", "9p"));
        assert_eq!(nine.data, "trans=virtio,version=9p2000.L,msize=512000");
        assert_eq!(p("block:/dev/vda").mount_plan(None, None).unwrap().fstype, "ext4");
    }

    #[test]
    fn the_kernels_spelling_is_understood() {
        let r = |root, nfs, t| RootSpec::from_kernel_words(root, nfs, t).map(|r| r.map(|r| r.to_string()));
        assert_eq!(
            r(Some("/dev/nfs"), Some("10.0.2.2:/export"), None),
            Some(Ok("nfs:10.0.2.2:/export,vers=4.2".into()))
        );
        assert_eq!(
            r(Some("/dev/nfs"), Some("/export,vers=3,port=2049,mountport=20048"), None),
            Some(Ok("nfs::/export,vers=3,port=2049,mountport=20048".into()))
        );
        assert!(r(Some("/dev/nfs"), None, None).unwrap().unwrap_err().contains("nfsroot="));
        assert_eq!(r(Some("/dev/vda"), None, Some("xfs")), Some(Ok("block:/dev/vda,fstype=xfs".into())));
        assert_eq!(r(None, Some("10.0.2.2:/e"), None), None);
        assert_eq!(r(Some("LABEL=root"), None, None), None);
    }

    #[test]
    fn each_root_names_its_modules() {
        assert_eq!(p("nfs::/e").modules(), ["nfsv4"]);
        assert_eq!(p("nfs::/e,vers=3,port=1,mountport=2").modules(), ["nfsv3"]);
        assert_eq!(p("9p:r").modules(), ["9pnet_virtio", "9p"]);
        assert!(p("nfs::/e").needs_network() && !p("9p:r").needs_network());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "(nfs|9p|virtiofs|block|x)?:?[/a-z0-9.,:=]{0,40}") {
            if let Ok(spec) = s.parse::<RootSpec>() {
                proptest::prop_assert_eq!(spec.to_string().parse::<RootSpec>(), Ok(spec));
            }
        }
    }
}
