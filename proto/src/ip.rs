//! The kernel's `ip=` syntax, parsed:
//! `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`.
//!
//! Every field is optional. Both sides read it: the host validates `--set ip=...`, the
//! agent configures the interface from it (`ip=dhcp` and friends mean "automatic").

use std::net::Ipv4Addr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpConfig {
    /// `ip=off` / `ip=none` / empty.
    Off,
    /// `ip=dhcp` and friends (`on`, `any`, `bootp`, `rarp`, `both`, `dhcp6`...): the agent
    /// leaves it to whoever ran before it.
    Automatic(String),
    Static(StaticIp),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticIp {
    pub client: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub device: Option<String>,
    pub autoconf: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

const AUTOMATIC: &[&str] = &["on", "any", "dhcp", "bootp", "rarp", "both", "dhcp6", "auto6"];

fn field_addr(name: &str, value: &str) -> Result<Option<Ipv4Addr>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("ip=: the {name} field {value:?} is not an IPv4 address (like 10.0.2.15)"))
}

/// Parse the value of `ip=` (without the `ip=`).
pub fn parse_ip(value: &str) -> Result<IpConfig, String> {
    let value = value.trim();
    if value.is_empty() || value == "off" || value == "none" {
        return Ok(IpConfig::Off);
    }
    if AUTOMATIC.contains(&value) {
        return Ok(IpConfig::Automatic(value.to_string()));
    }
    let f: Vec<&str> = value.split(':').collect();
    if f.len() > 10 {
        return Err(format!("ip=: {value:?} has {} fields, at most 10 are known", f.len()));
    }
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let text = |i: usize| Some(get(i).to_string()).filter(|s| !s.is_empty());
    let mut cfg = StaticIp {
        client: field_addr("client", get(0))?,
        server: field_addr("server", get(1))?,
        gateway: field_addr("gateway", get(2))?,
        netmask: field_addr("netmask", get(3))?,
        hostname: text(4),
        device: text(5),
        autoconf: text(6),
        dns: Vec::new(),
    };
    for i in [7, 8] {
        if let Some(a) = field_addr("dns", get(i))? {
            cfg.dns.push(a);
        }
    }
    if let Some(d) = &cfg.device {
        if d.len() >= 16 {
            return Err(format!("ip=: device {d:?} is longer than an interface name can be (15)"));
        }
    }
    match cfg.autoconf.as_deref() {
        None | Some("off") | Some("none") => {}
        Some(a) if AUTOMATIC.contains(&a) && cfg.client.is_none() => {
            return Ok(IpConfig::Automatic(a.to_string()))
        }
        Some(a) if AUTOMATIC.contains(&a) => {}
        Some(a) => {
            return Err(format!(
                "ip=: autoconf field {a:?} is not one of off, none, dhcp, on, any, bootp, rarp, both"
            ))
        }
    }
    Ok(IpConfig::Static(cfg))
}

/// The classful netmask the kernel's ipconfig uses when none is given.
pub fn default_netmask(addr: Ipv4Addr) -> Ipv4Addr {
    match addr.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: &str) -> Ipv4Addr {
        a.parse().unwrap()
    }

    #[test]
    fn full_static_line_parses() {
        let c = parse_ip("10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:board:eth0:off:10.0.2.3").unwrap();
        assert_eq!(
            c,
            IpConfig::Static(StaticIp {
                client: Some(ip("10.0.2.15")),
                server: Some(ip("10.0.2.2")),
                gateway: Some(ip("10.0.2.2")),
                netmask: Some(ip("255.255.255.0")),
                hostname: Some("board".into()),
                device: Some("eth0".into()),
                autoconf: Some("off".into()),
                dns: vec![ip("10.0.2.3")],
            })
        );
    }

    #[test]
    fn fields_may_be_left_out() {
        let IpConfig::Static(c) = parse_ip("10.0.2.15::::").unwrap() else { panic!() };
        assert_eq!(c.client, Some(ip("10.0.2.15")));
        assert_eq!((c.gateway, c.netmask, c.device), (None, None, None));
        let IpConfig::Static(c) = parse_ip("192.168.1.9").unwrap() else { panic!() };
        assert_eq!(c.client, Some(ip("192.168.1.9")));
    }

    #[test]
    fn automatic_forms_are_recognised() {
        assert_eq!(parse_ip("dhcp").unwrap(), IpConfig::Automatic("dhcp".into()));
        assert_eq!(parse_ip("::::board:eth0:dhcp").unwrap(), IpConfig::Automatic("dhcp".into()));
        assert_eq!(parse_ip("off").unwrap(), IpConfig::Off);
        assert_eq!(parse_ip("").unwrap(), IpConfig::Off);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse_ip("10.0.2.300").unwrap_err();
        assert!(e.contains("client") && e.contains("10.0.2.300"), "{e}");
        let e = parse_ip("10.0.2.15::x").unwrap_err();
        assert!(e.contains("gateway"), "{e}");
        assert!(parse_ip("10.0.2.15::::::bogus").unwrap_err().contains("autoconf"));
        assert!(parse_ip("1:2:3:4:5:6:7:8:9:10:11").is_err());
        assert!(parse_ip("10.0.0.1:::::a-very-long-interface-name").is_err());
    }

    #[test]
    fn classful_default_netmask() {
        assert_eq!(default_netmask(ip("10.0.2.15")), ip("255.0.0.0"));
        assert_eq!(default_netmask(ip("172.16.0.1")), ip("255.255.0.0"));
        assert_eq!(default_netmask(ip("192.168.0.1")), ip("255.255.255.0"));
    }
}

#[cfg(test)]
mod fuzz {
    proptest::proptest! {
        #[test]
        fn parse_ip_never_panics(s in "[0-9a-z.:]{0,80}") {
            let _ = super::parse_ip(&s);
        }
    }
}
