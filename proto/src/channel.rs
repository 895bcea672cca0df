//! The `channel` setting: which link carries the uplink protocol.

use serde::{Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub const DEFAULT_BAUD: u32 = 115_200;
pub const DEFAULT_CONSOLE: &str = "/dev/console";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    None,
    RtsCts,
}

/// A parsed channel specification. The text forms:
/// - `serial:DEV[,BAUD][,flow=none|rtscts][,oneway]`
/// - `console[:DEV][,oneway]` (share the console; default `/dev/console`)
///
/// `DEV` is a path (`/dev/ttyS1`) or the kernel's name of the port (`ttyS1`, as in
/// `console=ttyS1`), which means `/dev/ttyS1`.
/// - `tcp:HOST:PORT` (`HOST` may be `[v6addr]`)
/// - `file:PATH` (append, one-way)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSpec {
    Serial { device: PathBuf, baud: u32, flow: Flow, one_way: bool },
    Console { device: PathBuf, one_way: bool },
    Tcp { host: String, port: u16 },
    File { path: PathBuf },
}

impl Default for ChannelSpec {
    fn default() -> Self {
        ChannelSpec::Console { device: PathBuf::from(DEFAULT_CONSOLE), one_way: false }
    }
}

fn absolute(what: &str, p: &str) -> Result<PathBuf, String> {
    if p.starts_with('/') {
        Ok(PathBuf::from(p))
    } else {
        Err(format!("channel {what} path {p:?} must be absolute, like /dev/ttyS1"))
    }
}

/// A device as a path, or as the kernel spells it in `console=ttyS1`: a bare name is
/// `/dev/NAME`.
fn device(what: &str, p: &str) -> Result<PathBuf, String> {
    if !p.contains('/') && !p.is_empty() && p != "." && p != ".." {
        return Ok(PathBuf::from("/dev").join(p));
    }
    absolute(what, p)
}

impl FromStr for ChannelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        if let Some((k @ ("serial" | "console"), _)) = kind.split_once(',') {
            return Err(format!(
                "channel {s:?}: options follow the device after a colon, like {k}:{},oneway",
                if k == "console" { "" } else { "/dev/ttyS1" }
            ));
        }
        match kind {
            "serial" | "console" => {
                let mut parts = rest.split(',');
                let dev = parts.next().unwrap_or("");
                let (mut baud, mut flow, mut one_way) = (None, Flow::None, false);
                for opt in parts {
                    match opt {
                        "flow=none" => flow = Flow::None,
                        "flow=rtscts" => flow = Flow::RtsCts,
                        "oneway" => one_way = true,
                        _ if kind == "serial" && opt.bytes().all(|b| b.is_ascii_digit()) && !opt.is_empty() => {
                            let b: u32 = opt.parse().map_err(|_| format!("channel {s:?}: baud rate {opt} is too large"))?;
                            if b == 0 || b > 16_000_000 {
                                return Err(format!("channel {s:?}: baud rate {b} is out of range (50..16000000)"));
                            }
                            baud = Some(b);
                        }
                        _ => {
                            return Err(format!(
                                "channel {s:?}: unknown option {opt:?} (expected a baud rate, flow=none, flow=rtscts or oneway)"
                            ))
                        }
                    }
                }
                if kind == "console" {
                    if flow != Flow::None {
                        return Err(format!("channel {s:?}: the console's flow control is not the agent's to set"));
                    }
                    let device = if dev.is_empty() { PathBuf::from(DEFAULT_CONSOLE) } else { device("console", dev)? };
                    return Ok(ChannelSpec::Console { device, one_way });
                }
                if dev.is_empty() {
                    return Err(format!("channel {s:?}: name the serial device, like serial:/dev/ttyS1,115200"));
                }
                Ok(ChannelSpec::Serial { device: device("serial", dev)?, baud: baud.unwrap_or(DEFAULT_BAUD), flow, one_way })
            }
            "tcp" => {
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| format!("channel {s:?}: expected tcp:HOST:PORT, like tcp:10.0.2.2:7000"))?;
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                if host.is_empty() {
                    return Err(format!("channel {s:?}: the host is empty"));
                }
                let port: u16 = port.parse().map_err(|_| format!("channel {s:?}: port {port:?} is not a number 1-65535"))?;
                if port == 0 {
                    return Err(format!("channel {s:?}: port 0 cannot be connected to"));
                }
                Ok(ChannelSpec::Tcp { host: host.to_string(), port })
            }
            "file" => Ok(ChannelSpec::File { path: absolute("file", rest)? }),
            _ => Err(format!(
                "channel {s:?}: unknown kind {kind:?}; use serial:DEV[,BAUD], console, tcp:HOST:PORT or file:PATH"
            )),
        }
    }
}

impl fmt::Display for ChannelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelSpec::Serial { device, baud, flow, one_way } => {
                write!(f, "serial:{},{baud}", device.display())?;
                if *flow == Flow::RtsCts {
                    write!(f, ",flow=rtscts")?;
                }
                if *one_way {
                    write!(f, ",oneway")?;
                }
                Ok(())
            }
            ChannelSpec::Console { device, one_way } => {
                write!(f, "console")?;
                if device.as_os_str() != DEFAULT_CONSOLE {
                    write!(f, ":{}", device.display())?;
                }
                if *one_way {
                    write!(f, "{}oneway", if device.as_os_str() != DEFAULT_CONSOLE { "," } else { ":," })?;
                }
                Ok(())
            }
            ChannelSpec::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            ChannelSpec::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            ChannelSpec::File { path } => write!(f, "file:{}", path.display()),
        }
    }
}

impl Serialize for ChannelSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ChannelSpec {
        s.parse().unwrap()
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "serial:/dev/ttyS1,115200",
            "serial:/dev/ttyAMA1,9600,flow=rtscts",
            "serial:/dev/ttyS1,115200,oneway",
            "console",
            "console:/dev/ttyS0",
            "console:,oneway",
            "console:/dev/ttyS0,oneway",
            "tcp:10.0.2.2:7000",
            "tcp:[fe80::1]:7000",
            "tcp:host.example:1",
            "file:/srv/out/uplink.bin",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert_eq!(
            p("serial:/dev/ttyS1"),
            ChannelSpec::Serial {
                device: "/dev/ttyS1".into(),
                baud: 115200,
                flow: Flow::None,
                one_way: false
            }
        );
        assert_eq!(p("console"), ChannelSpec::default());
    }

    #[test]
    fn the_kernels_spelling_of_a_port_names_the_device_under_dev() {
        assert_eq!(p("serial:ttyS1,115200"), p("serial:/dev/ttyS1,115200"));
        assert_eq!(p("serial:ttyAMA1").to_string(), "serial:/dev/ttyAMA1,115200");
        assert_eq!(p("console:hvc0,oneway").to_string(), "console:/dev/hvc0,oneway");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (s, needle) in [
            ("serial:", "name the serial device"),
            ("serial:dev/ttyS1", "absolute"),
            ("console,oneway", "console:,oneway"),
            ("serial,/dev/ttyS1", "serial:/dev/ttyS1,oneway"),
            ("serial:/dev/ttyS1,20000000", "out of range"),
            ("tcp:10.0.2.2:0", "port 0"),
            ("serial:/dev/ttyS1,0", "out of range"),
            ("serial:/dev/ttyS1,99999999999", "too large"),
            ("serial:/dev/ttyS1,fast", "unknown option"),
            ("tcp:10.0.2.2", "tcp:HOST:PORT"),
            ("tcp:10.0.2.2:http", "not a number"),
            ("tcp::7000", "host is empty"),
            ("tcp:h:0", "port 0"),
            ("file:out.bin", "absolute"),
            ("usb:/dev/x", "unknown kind"),
            ("console,flow=rtscts", "after a colon"),
            ("console:/dev/ttyS0,flow=rtscts", "flow control"),
        ] {
            let e = s.parse::<ChannelSpec>().unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::ChannelSpec;
    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "(serial|console|tcp|file|x)?:?[/a-z0-9.,:=\\[\\]]{0,40}") {
            if let Ok(spec) = s.parse::<ChannelSpec>() {
                proptest::prop_assert_eq!(spec.to_string().parse::<ChannelSpec>(), Ok(spec));
            }
        }
    }
}
