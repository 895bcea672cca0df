//! Probe init: proves that a kernel booted us as PID 1 and that a channel reaches the host.
//!
//! Settings come from the kernel command line (read from /proc/cmdline):
//!   probe.mods=/a.ko:/b.ko         load these modules in order with finit_module
//!   probe.mount=FS|SRC|DIR[|OPTS]  mount a filesystem (after the modules and network), e.g.
//!                                  9p|root|/mnt|trans=virtio,version=9p2000.L
//!   probe.net=eth0/10.0.2.15/24    configure an interface with ioctls (needs its driver)
//!   probe.out=KIND:WHERE           where the marker goes, repeatable with commas:
//!                                  dev:/dev/ttyS1   tcp:10.0.2.2:5555   file:/path
//!   probe.persist=/path            power-cut check: if the file exists report its content,
//!                                  else write + fsync it, report, then wait to be killed
//!   probe.tag=WORD                 a word copied into the marker line
//! Every line written starts with "PROBE ". The last line is "PROBE DONE" before power off.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

fn main() {
    let start = Instant::now();
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let param = |key: &str| -> Option<String> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };

    let mut report: Vec<String> = Vec::new();
    report.push(format!(
        "PROBE BOOT arch={} tag={} pid={} uptime={}",
        std::env::consts::ARCH,
        param("probe.tag").unwrap_or_default(),
        std::process::id(),
        uptime()
    ));

    if let Some(mods) = param("probe.mods") {
        for m in mods.split(':').filter(|m| !m.is_empty()) {
            report.push(format!("PROBE MOD {} {}", m, load_module(m)));
        }
    }
    if let Some(net) = param("probe.net") {
        report.push(format!("PROBE NET {} {}", net, configure_net(&net)));
    }
    if let Some(spec) = param("probe.mount") {
        report.push(format!("PROBE MOUNT {} {}", spec, mount_spec(&spec)));
    }
    if let Some(path) = param("probe.persist") {
        match fs::read_to_string(&path) {
            Ok(content) => report.push(format!("PROBE PERSIST-FOUND {} {}", path, content.trim())),
            Err(_) => {
                let r = write_durably(&path, "written-before-power-cut\n");
                report.push(format!("PROBE PERSIST-WROTE {} {}", path, r));
                report.push(format!("PROBE WAITING-FOR-KILL uptime={}", uptime()));
                emit_all(&param("probe.out"), &report);
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
        }
    }
    report.push(format!("PROBE OK uptime={} init-ms={}", uptime(), start.elapsed().as_millis()));
    report.push("PROBE DONE".to_string());
    emit_all(&param("probe.out"), &report);
    power_off();
}

fn uptime() -> String {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn mount(src: &str, target: &str, fstype: &str) {
    let _ = fs::create_dir_all(target);
    let (s, t, f) = (cstr(src), cstr(target), cstr(fstype));
    // EBUSY means an initrd already mounted it: that is fine.
    unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
}

fn mount_spec(spec: &str) -> String {
    let mut parts = spec.splitn(4, '|');
    let (Some(fs), Some(src), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        return "bad-spec".into();
    };
    let opts = cstr(parts.next().unwrap_or(""));
    let _ = fs::create_dir_all(dir);
    let (s, t, f) = (cstr(src), cstr(dir), cstr(fs));
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, opts.as_ptr() as *const _) };
    if r == 0 {
        "mounted".into()
    } else {
        format!("failed:{}", std::io::Error::last_os_error())
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn load_module(path: &str) -> String {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("open-failed:{e}"),
    };
    let empty = cstr("");
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), empty.as_ptr(), 0) };
    if r == 0 {
        "loaded".into()
    } else {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            "already".into()
        } else {
            format!("failed:{e}")
        }
    }
}

/// "eth0/10.0.2.15/24": address, netmask, up. Waits for the interface to appear.
fn configure_net(spec: &str) -> String {
    let mut parts = spec.split('/');
    let (Some(ifname), Some(addr), Some(prefix)) = (parts.next(), parts.next(), parts.next()) else {
        return "bad-spec".into();
    };
    let (Ok(addr), Ok(prefix)) = (addr.parse::<std::net::Ipv4Addr>(), prefix.parse::<u32>()) else {
        return "bad-spec".into();
    };
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix.min(32)) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&format!("/sys/class/net/{ifname}")).exists() {
        if Instant::now() > deadline {
            return "no-such-interface".into();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if sock < 0 {
            return "socket-failed".into();
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in ifname.bytes().take(15).enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        let set_addr = |req: &mut libc::ifreq, ip: u32, op: libc::c_ulong| -> i32 {
            let sin = &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in;
            (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
            (*sin).sin_addr.s_addr = ip.to_be();
            libc::ioctl(sock, op as _, req as *mut libc::ifreq)
        };
        if set_addr(&mut req, u32::from(addr), libc::SIOCSIFADDR) < 0 {
            return format!("SIOCSIFADDR:{}", std::io::Error::last_os_error());
        }
        if set_addr(&mut req, mask, libc::SIOCSIFNETMASK) < 0 {
            return format!("SIOCSIFNETMASK:{}", std::io::Error::last_os_error());
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req as *mut libc::ifreq) < 0 {
            return format!("SIOCGIFFLAGS:{}", std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &mut req as *mut libc::ifreq) < 0 {
            return format!("SIOCSIFFLAGS:{}", std::io::Error::last_os_error());
        }
        libc::close(sock);
    }
    format!("up uptime={}", uptime())
}

fn write_durably(path: &str, content: &str) -> String {
    let r = (|| -> std::io::Result<()> {
        let mut f = File::create(path)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        if let Some(dir) = std::path::Path::new(path).parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => "fsynced".into(),
        Err(e) => format!("failed:{e}"),
    }
}

fn emit_all(outs: &Option<String>, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    // The console always gets the lines too: it is the log of last resort.
    if let Ok(mut c) = OpenOptions::new().write(true).open("/dev/console") {
        let _ = c.write_all(text.as_bytes());
    }
    let Some(outs) = outs else { return };
    for out in outs.split(',') {
        let r = match out.split_once(':') {
            Some(("dev", path)) => emit_dev(path, &text),
            Some(("file", path)) => write_durably_text(path, &text),
            Some(("tcp", addr)) => emit_tcp(addr, &text),
            _ => Err(format!("unknown output '{out}'")),
        };
        if let Err(e) = r {
            if let Ok(mut c) = OpenOptions::new().write(true).open("/dev/console") {
                let _ = writeln!(c, "PROBE OUTPUT-FAILED {out} {e}");
            }
        }
    }
}

fn emit_dev(path: &str, text: &str) -> Result<(), String> {
    // A device made by a module (virtio ports) can appear a little after the load.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut dev = loop {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => break f,
            Err(e) if Instant::now() > deadline => return Err(format!("open {path}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    dev.write_all(text.as_bytes()).map_err(|e| format!("write {path}: {e}"))?;
    let _ = dev.flush();
    // Let the UART drain before power off (tcdrain is a no-op for virtio ports).
    unsafe { libc::tcdrain(dev.as_raw_fd()) };
    Ok(())
}

fn write_durably_text(path: &str, text: &str) -> Result<(), String> {
    let r = write_durably(path, text);
    if r == "fsynced" {
        Ok(())
    } else {
        Err(r)
    }
}

fn emit_tcp(addr: &str, text: &str) -> Result<(), String> {
    let addr: SocketAddrV4 = addr.parse().map_err(|e| format!("bad address {addr}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tries = 0;
    let mut stream = loop {
        tries += 1;
        match TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => return Err(format!("connect {addr}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let text = format!("PROBE TCP-CONNECTED tries={} uptime={}\n{}", tries, uptime(), text);
    stream.write_all(text.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Wait for the host to close, so the bytes are out before the power goes.
    let mut sink = [0u8; 64];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.read(&mut sink);
    Ok(())
}

fn power_off() -> ! {
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // PID 1 must never exit.
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
