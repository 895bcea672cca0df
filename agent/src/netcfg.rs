//! Static IPv4 set-up from a parsed `ip=` (see [`stagehand_proto::ip`]), with ioctls:
//! the kernel itself often lacks this (`CONFIG_IP_PNP` is off in Debian's kernels).

use crate::sys::{Sys, IFF_UP};
use stagehand_proto::ip::{default_netmask, StaticIp};
use std::path::Path;

/// The first interface other than `lo` in `/sys/class/net`.
pub fn first_interface(sys: &dyn Sys) -> Result<String, String> {
    let names = sys.list_dir(Path::new("/sys/class/net")).map_err(|e| {
        format!("cannot list /sys/class/net to find a network interface ({e}); name one in ip=...:DEVICE")
    })?;
    names.into_iter().find(|n| n != "lo").ok_or_else(|| {
        "no network interface besides lo: load its driver with the modules setting".to_string()
    })
}

/// Configure the interface. Returns what was done, one line each. An interface that
/// already has an IPv4 address is left alone.
pub fn apply(sys: &dyn Sys, cfg: &StaticIp) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let Some(client) = cfg.client else {
        done.push("ip=: no client address given, nothing to configure".to_string());
        return Ok(done);
    };
    let dev = match &cfg.device {
        Some(d) => d.clone(),
        None => first_interface(sys)?,
    };
    match sys.if_get_ipv4(&dev) {
        Ok(Some(existing)) => {
            done.push(format!("{dev} already has {existing}, left as it is"));
            return Ok(done);
        }
        Ok(None) => {}
        Err(e) => {
            return Err(format!(
                "network interface {dev}: {e} (is its driver loaded? see the modules setting)"
            ))
        }
    }
    let mask = cfg.netmask.unwrap_or_else(|| default_netmask(client));
    sys.if_set_ipv4(&dev, client).map_err(|e| format!("{dev}: setting address {client}: {e}"))?;
    sys.if_set_netmask(&dev, mask).map_err(|e| format!("{dev}: setting netmask {mask}: {e}"))?;
    let flags = sys.if_get_flags(&dev).map_err(|e| format!("{dev}: reading flags: {e}"))?;
    sys.if_set_flags(&dev, flags | IFF_UP).map_err(|e| format!("{dev}: bringing it up: {e}"))?;
    done.push(format!("{dev} is up with {client} netmask {mask}"));
    if let Some(gw) = cfg.gateway.filter(|g| !g.is_unspecified()) {
        sys.add_default_route(gw, Some(&dev)).map_err(|e| format!("default route via {gw}: {e}"))?;
        done.push(format!("default route via {gw} on {dev}"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::RecordingSys;
    use stagehand_proto::ip::{parse_ip, IpConfig};
    use std::net::Ipv4Addr;

    fn ip(a: &str) -> Ipv4Addr {
        a.parse().unwrap()
    }

    #[test]
    fn apply_sets_address_mask_flags_and_route_in_order() {
        let sys = RecordingSys::new();
        sys.add_dir("/sys/class/net").add_dir("/sys/class/net/lo").add_dir("/sys/class/net/eth0");
        sys.set_interface("eth0", 0x1002, None);
        let IpConfig::Static(c) = parse_ip("10.0.2.15::10.0.2.2:255.255.255.0").unwrap() else { panic!() };
        let done = apply(&sys, &c).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                "if_set_ipv4 eth0 10.0.2.15",
                "if_set_netmask eth0 255.255.255.0",
                "if_set_flags eth0 0x1003",
                "route add default via 10.0.2.2 dev eth0",
            ]
        );
        assert_eq!(done.len(), 2);
    }

    #[test]
    fn an_interface_with_an_address_is_left_alone() {
        let sys = RecordingSys::new();
        sys.set_interface("eth0", 0x1043, Some(ip("10.0.2.15")));
        let IpConfig::Static(c) = parse_ip("10.0.2.99:::::eth0").unwrap() else { panic!() };
        let done = apply(&sys, &c).unwrap();
        assert!(sys.calls().is_empty());
        assert!(done[0].contains("already has 10.0.2.15"));
    }

    #[test]
    fn a_missing_interface_is_a_clear_error() {
        let sys = RecordingSys::new();
        let IpConfig::Static(c) = parse_ip("10.0.2.15:::::eth1").unwrap() else { panic!() };
        let e = apply(&sys, &c).unwrap_err();
        assert!(e.contains("eth1") && e.contains("modules"), "{e}");
        let sys = RecordingSys::new();
        sys.add_dir("/sys/class/net").add_dir("/sys/class/net/lo");
        let IpConfig::Static(c) = parse_ip("10.0.2.15").unwrap() else { panic!() };
        assert!(apply(&sys, &c).unwrap_err().contains("no network interface"));
    }
}
