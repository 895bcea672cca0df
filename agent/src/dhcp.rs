//! A DHCPv4 client: discover, offer, request, ack, then renewal while the build runs.
//!
//! Messages are smoltcp's wire types (`smoltcp::wire::DhcpRepr`: +8 KB in the static agent,
//! measured, against +250 KB for dhcproto). [`Exchange`] is the state machine, with no
//! I/O; [`acquire`] and [`keep_renewing`] drive it over a UDP socket bound to the
//! interface (`SO_BINDTODEVICE`), with the broadcast flag set so that answers reach an
//! interface that has no address yet.

use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What the server gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// The DHCP server (option 54).
    pub server: Ipv4Addr,
    /// `siaddr`: the next server of a netboot (TFTP, NFS), when the server sets it.
    pub next_server: Option<Ipv4Addr>,
    pub lease_secs: u32,
    /// T1: when to renew.
    pub renew_secs: u32,
}

impl Lease {
    /// The server a root without one should be mounted from: `siaddr`, else the DHCP server.
    pub fn boot_server(&self) -> Ipv4Addr {
        self.next_server.unwrap_or(self.server)
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        let mut s = format!("{} netmask {}", self.address, self.netmask);
        if let Some(r) = self.router {
            s.push_str(&format!(" router {r}"));
        }
        s.push_str(&format!(" from {} for {} s", self.server, self.lease_secs));
        s
    }
}

/// What the state machine wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this packet (broadcast) and wait for the next answer.
    Send(Vec<u8>),
    /// The lease is ours.
    Bound(Lease),
    /// The server refused (NAK): start over with a discover.
    Restart,
    /// Not an answer to us: keep waiting.
    Ignore,
}

/// One DHCP exchange (a discover/request or a renewal) of one interface.
pub struct Exchange {
    xid: u32,
    mac: [u8; 6],
    /// The offer being requested, once one came.
    offered: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Set for a renewal: the address we hold.
    renewing: Option<Ipv4Addr>,
}

const PARAMETERS: &[u8] = &[1, 3, 6, 51, 54, 58];

impl Exchange {
    pub fn new(xid: u32, mac: [u8; 6]) -> Exchange {
        Exchange { xid, mac, offered: None, renewing: None }
    }

    /// A renewal of `lease` (REQUEST with `ciaddr`, no server id: RFC 2131 4.3.2).
    pub fn renewal(xid: u32, mac: [u8; 6], lease: &Lease) -> Exchange {
        Exchange { xid, mac, offered: None, renewing: Some(lease.address) }
    }

    fn repr(&self, kind: DhcpMessageType) -> DhcpRepr<'static> {
        DhcpRepr {
            message_type: kind,
            transaction_id: self.xid,
            secs: 0,
            client_hardware_address: EthernetAddress(self.mac),
            client_ip: self.renewing.unwrap_or(Ipv4Addr::UNSPECIFIED),
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: self.renewing.is_none(),
            requested_ip: None,
            client_identifier: Some(EthernetAddress(self.mac)),
            server_identifier: None,
            parameter_request_list: Some(PARAMETERS),
            dns_servers: None,
            max_size: Some(1400),
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        }
    }

    fn encode(repr: &DhcpRepr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        // The buffer is exactly the size the representation asks for.
        let _ = repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]));
        buf
    }

    /// The first packet: a DISCOVER, or for a renewal its REQUEST.
    pub fn start(&self) -> Vec<u8> {
        match self.renewing {
            Some(_) => Self::encode(&self.repr(DhcpMessageType::Request)),
            None => Self::encode(&self.repr(DhcpMessageType::Discover)),
        }
    }

    /// Take one datagram from the server.
    pub fn handle(&mut self, datagram: &[u8]) -> Step {
        let Ok(packet) = DhcpPacket::new_checked(datagram) else { return Step::Ignore };
        let Ok(r) = DhcpRepr::parse(&packet) else { return Step::Ignore };
        if r.transaction_id != self.xid || r.client_hardware_address.0 != self.mac {
            return Step::Ignore;
        }
        match r.message_type {
            DhcpMessageType::Offer if self.offered.is_none() && self.renewing.is_none() => {
                let Some(server) = r.server_identifier else { return Step::Ignore };
                self.offered = Some((r.your_ip, server));
                let mut req = self.repr(DhcpMessageType::Request);
                req.requested_ip = Some(r.your_ip);
                req.server_identifier = Some(server);
                Step::Send(Self::encode(&req))
            }
            DhcpMessageType::Ack if self.offered.is_some() || self.renewing.is_some() => {
                let server =
                    r.server_identifier.or(self.offered.map(|(_, s)| s)).unwrap_or(Ipv4Addr::UNSPECIFIED);
                let lease_secs = r.lease_duration.unwrap_or(u32::MAX);
                Step::Bound(Lease {
                    address: r.your_ip,
                    netmask: r.subnet_mask.unwrap_or_else(|| stagehand_proto::ip::default_netmask(r.your_ip)),
                    router: r.router,
                    dns: r.dns_servers.map(|d| d.iter().copied().collect()).unwrap_or_default(),
                    server,
                    next_server: Some(r.server_ip).filter(|s| !s.is_unspecified()),
                    lease_secs,
                    renew_secs: r.renew_duration.unwrap_or(lease_secs / 2),
                })
            }
            DhcpMessageType::Nak => Step::Restart,
            _ => Step::Ignore,
        }
    }
}

/// The interface's hardware address, from `/sys/class/net/IF/address`.
pub fn mac_of(ifname: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{ifname}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path} ({e})"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{path}: {:?} is not a MAC address", text.trim()));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16)
            .map_err(|_| format!("{path}: {:?} is not a MAC address", text.trim()))?;
    }
    Ok(mac)
}

fn socket(ifname: &str) -> Result<UdpSocket, String> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .map_err(|e| format!("DHCP: cannot bind UDP port 68 ({e})"))?;
    sock.set_broadcast(true).map_err(|e| format!("DHCP: SO_BROADCAST: {e}"))?;
    let name = ifname.as_bytes();
    // SAFETY: setsockopt with a pointer to the interface name and its length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr() as *const libc::c_void,
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("DHCP: cannot bind to {ifname} ({})", std::io::Error::last_os_error()));
    }
    Ok(sock)
}

fn random_xid() -> u32 {
    let mut b = [0u8; 4];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u32::from_ne_bytes(b) | 1
}

/// Run `ex` over `sock` until bound, refused, or `deadline`; resends with backoff.
fn run(
    sock: &UdpSocket,
    ex: &mut Exchange,
    deadline: Instant,
    to: SocketAddrV4,
) -> Result<Option<Lease>, String> {
    let mut packet = ex.start();
    let mut wait = Duration::from_secs(1);
    let mut buf = vec![0u8; 1500];
    loop {
        sock.send_to(&packet, to).map_err(|e| format!("DHCP: send: {e}"))?;
        let resend_at = (Instant::now() + wait).min(deadline);
        wait = (wait * 2).min(Duration::from_secs(8));
        loop {
            let now = Instant::now();
            if now >= resend_at {
                break;
            }
            sock.set_read_timeout(Some(resend_at - now)).map_err(|e| format!("DHCP: {e}"))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("DHCP: receive: {e}")),
            };
            match ex.handle(&buf[..n]) {
                Step::Send(next) => {
                    packet = next;
                    sock.send_to(&packet, to).map_err(|e| format!("DHCP: send: {e}"))?;
                }
                Step::Bound(lease) => return Ok(Some(lease)),
                Step::Restart => return Ok(None),
                Step::Ignore => {}
            }
        }
        if Instant::now() >= deadline {
            return Err("DHCP: no answer from a DHCP server".to_string());
        }
    }
}

/// Get a lease for `ifname` (which must be up), trying for at most `patience`.
pub fn acquire(ifname: &str, patience: Duration) -> Result<Lease, String> {
    let mac = mac_of(ifname)?;
    let sock = socket(ifname)?;
    let deadline = Instant::now() + patience;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    loop {
        let mut ex = Exchange::new(random_xid(), mac);
        match run(&sock, &mut ex, deadline, to) {
            Ok(Some(lease)) => return Ok(lease),
            Ok(None) => log::warn!("DHCP: the server refused the offered address; asking again"),
            Err(e) => {
                return Err(format!(
                    "{e} on {ifname} within {} s (is a DHCP server on that network?)",
                    patience.as_secs()
                ))
            }
        }
    }
}

/// Renew `lease` at each T1 for as long as the agent runs (a thread; never returns).
/// A failed renewal is logged and tried again; the address is kept (a build must not lose
/// its NFS root because the DHCP server went away for a while).
pub fn keep_renewing(ifname: String, mut lease: Lease) {
    let _ = std::thread::Builder::new().name("dhcp".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_secs(u64::from(lease.renew_secs.max(10))));
        let result = mac_of(&ifname).and_then(|mac| {
            let sock = socket(&ifname)?;
            let mut ex = Exchange::renewal(random_xid(), mac, &lease);
            let to = SocketAddrV4::new(lease.server, 67);
            run(&sock, &mut ex, Instant::now() + Duration::from_secs(30), to)
        });
        match result {
            Ok(Some(l)) if l.address == lease.address => {
                log::info!("DHCP: lease of {} renewed for {} s", l.address, l.lease_secs);
                lease = l;
            }
            Ok(Some(l)) => log::warn!("DHCP: the server now offers {}, keeping {}", l.address, lease.address),
            Ok(None) => {
                log::warn!("DHCP: the server refused to renew {}; keeping it and trying again", lease.address)
            }
            Err(e) => log::warn!("{e}; keeping {} and trying again", lease.address),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::DhcpOption;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    const DNS: [DhcpOption<'static>; 1] = [DhcpOption { kind: 6, data: &[10, 0, 2, 3] }];

    fn server_reply(kind: DhcpMessageType, xid: u32, yiaddr: [u8; 4]) -> Vec<u8> {
        let repr = DhcpRepr {
            message_type: kind,
            transaction_id: xid,
            secs: 0,
            client_hardware_address: EthernetAddress(MAC),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: Ipv4Addr::from(yiaddr),
            server_ip: Ipv4Addr::new(10, 0, 2, 2),
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: true,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(Ipv4Addr::new(10, 0, 2, 2)),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: Some(86400),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &DNS,
        };
        Exchange::encode(&repr)
    }

    fn parse(p: &[u8]) -> DhcpRepr<'_> {
        // Leaked for the test's convenience: parse borrows the packet.
        let packet = Box::leak(Box::new(DhcpPacket::new_checked(p).unwrap()));
        DhcpRepr::parse(packet).unwrap()
    }

    #[test]
    fn discover_offer_request_ack() {
        let mut ex = Exchange::new(0x1234, MAC);
        let discover = ex.start();
        let d = parse(&discover);
        assert_eq!(d.message_type, DhcpMessageType::Discover);
        assert!(d.broadcast, "answers must be broadcast: the interface has no address yet");
        assert_eq!(d.client_hardware_address.0, MAC);

        let Step::Send(request) = ex.handle(&server_reply(DhcpMessageType::Offer, 0x1234, [10, 0, 2, 15]))
        else {
            panic!("no request after the offer")
        };
        let r = parse(&request);
        assert_eq!(r.message_type, DhcpMessageType::Request);
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(r.server_identifier, Some(Ipv4Addr::new(10, 0, 2, 2)));

        // a second offer (another server) is not taken
        assert_eq!(ex.handle(&server_reply(DhcpMessageType::Offer, 0x1234, [10, 0, 2, 16])), Step::Ignore);
        let Step::Bound(lease) = ex.handle(&server_reply(DhcpMessageType::Ack, 0x1234, [10, 0, 2, 15]))
        else {
            panic!("not bound")
        };
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!((lease.lease_secs, lease.renew_secs), (86400, 43200));
        assert_eq!(lease.boot_server(), Ipv4Addr::new(10, 0, 2, 2));
        assert!(lease.describe().contains("10.0.2.15 netmask 255.255.255.0 router 10.0.2.2"));
    }

    #[test]
    fn answers_to_others_and_garbage_are_ignored_and_a_nak_restarts() {
        let mut ex = Exchange::new(7, MAC);
        assert_eq!(ex.handle(&server_reply(DhcpMessageType::Offer, 8, [10, 0, 2, 15])), Step::Ignore);
        assert_eq!(ex.handle(b"not dhcp at all"), Step::Ignore);
        assert_eq!(ex.handle(&[0u8; 600]), Step::Ignore);
        // an ACK before any offer is not ours to take
        assert_eq!(ex.handle(&server_reply(DhcpMessageType::Ack, 7, [10, 0, 2, 15])), Step::Ignore);
        assert!(matches!(ex.handle(&server_reply(DhcpMessageType::Offer, 7, [10, 0, 2, 15])), Step::Send(_)));
        assert_eq!(ex.handle(&server_reply(DhcpMessageType::Nak, 7, [0, 0, 0, 0])), Step::Restart);
    }

    #[test]
    fn a_renewal_asks_for_the_address_it_holds() {
        let lease = Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns: vec![],
            server: Ipv4Addr::new(10, 0, 2, 2),
            next_server: None,
            lease_secs: 100,
            renew_secs: 50,
        };
        let mut ex = Exchange::renewal(9, MAC, &lease);
        let start = ex.start();
        let r = parse(&start);
        assert_eq!(r.message_type, DhcpMessageType::Request);
        assert_eq!(r.client_ip, lease.address);
        assert!(!r.broadcast);
        assert!(matches!(ex.handle(&server_reply(DhcpMessageType::Ack, 9, [10, 0, 2, 15])), Step::Bound(_)));
    }

    #[test]
    fn options_the_client_does_not_know_do_not_stop_it() {
        let extra = [
            DhcpOption { kind: 66, data: b"tftp.lab" },
            DhcpOption { kind: 67, data: b"boot.ipxe" },
            DhcpOption { kind: 6, data: &[10, 0, 2, 3] },
        ];
        let mut ex = Exchange::new(5, MAC);
        let _ = ex.start();
        let offer = server_reply(DhcpMessageType::Offer, 5, [10, 0, 2, 15]);
        let mut r = parse(&offer).clone();
        r.additional_options = &extra;
        let with_extra = Exchange::encode(&r);
        assert!(matches!(ex.handle(&with_extra), Step::Send(_)));
    }

    proptest::proptest! {
        #[test]
        fn no_datagram_makes_the_client_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700)) {
            let mut ex = Exchange::new(1, MAC);
            let _ = ex.handle(&bytes);
        }
    }
}
