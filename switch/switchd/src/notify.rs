//! The service manager's readiness protocol (`sd_notify(3)`), spoken without libsystemd.
//!
//! Under systemd with `Type=notify`, `NOTIFY_SOCKET` names a Unix datagram socket: a
//! path, or an abstract name written with a leading `@`. switchd sends it newline
//! separated `KEY=VALUE` lines: `STATUS=` while it restores its ports, `READY=1` once
//! every saved port is back and the control socket accepts connections (so that units
//! ordered after switchd.service find the ports there), `STOPPING=1` when a signal stops
//! it. Without `NOTIFY_SOCKET` (switchd started by hand) nothing is sent.
//!
//! A message that cannot be sent is logged at debug and forgotten: the service manager
//! is told nothing more than it would be by a switchd without this module, and switchd
//! keeps forwarding.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable the service manager sets.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for; one that sends nothing when it is unset,
    /// empty or not a Unix socket address.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
            return Notifier { target: None };
        };
        let target = address(&value)
            .and_then(|addr| {
                UnixDatagram::unbound()
                    .map(|socket| (socket, addr))
                    .map_err(|err| format!("cannot open a datagram socket: {err}"))
            })
            .map_err(|err| tracing::debug!("not notifying the service manager: {err}"))
            .ok();
        Notifier { target }
    }

    /// A free-form line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// Startup is complete.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// Shutdown has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        match socket.send_to_addr(message.as_bytes(), addr) {
            Ok(_) => tracing::debug!(message, "notified the service manager"),
            Err(err) => tracing::debug!(message, "cannot notify the service manager: {err}"),
        }
    }
}

/// The socket address `NOTIFY_SOCKET` names: an absolute path, or `@name` for an abstract
/// one. (systemd also knows `vsock:` addresses, for virtual machines; switchd does not
/// run as a VM's init.)
fn address(value: &OsStr) -> Result<SocketAddr, String> {
    let bytes = value.as_bytes();
    let result = match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value),
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        _ => {
            return Err(format!(
                "{NOTIFY_SOCKET_ENV}={} is neither a path nor an @abstract name",
                value.to_string_lossy()
            ))
        }
    };
    result.map_err(|err| {
        format!(
            "{NOTIFY_SOCKET_ENV}={} is not a socket address: {err}",
            value.to_string_lossy()
        )
    })
}

/// The `STATUS=` of a switchd that is ready: what it restored.
pub fn ready_status(ports: usize, networks: usize) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "ready: {}, {}",
        plural(ports, "port", "ports"),
        plural(networks, "network", "networks")
    )
}

/// A value on one line: a newline in it would start another `KEY=`.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn received(listener: &UnixDatagram) -> String {
        let mut buf = [0; 512];
        let n = listener.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn notifier_for(addr: SocketAddr) -> Notifier {
        Notifier {
            target: Some((UnixDatagram::unbound().unwrap(), addr)),
        }
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("switchd-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = notifier_for(address(path.as_os_str()).unwrap());
        notifier.status("restoring ports");
        notifier.ready("ready: 2 ports,\n1 network");
        notifier.stopping("stopping");
        assert_eq!(received(&listener), "STATUS=restoring ports");
        assert_eq!(
            received(&listener),
            "READY=1\nSTATUS=ready: 2 ports, 1 network"
        );
        assert_eq!(received(&listener), "STOPPING=1\nSTATUS=stopping");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("switchd-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = notifier_for(address(OsStr::new(&format!("@{name}"))).unwrap());
        notifier.ready("ready");
        assert_eq!(received(&listener), "READY=1\nSTATUS=ready");
    }

    #[test]
    fn the_ready_status_counts_ports_and_networks() {
        assert_eq!(ready_status(0, 0), "ready: 0 ports, 0 networks");
        assert_eq!(ready_status(1, 1), "ready: 1 port, 1 network");
        assert_eq!(ready_status(12, 3), "ready: 12 ports, 3 networks");
    }

    #[test]
    fn other_addresses_send_nothing() {
        assert!(address(OsStr::new("")).is_err());
        assert!(address(OsStr::new("relative/notify.sock")).is_err());
        assert!(address(OsStr::new("vsock:2:1234")).is_err());
        let too_long = format!("/{}", "x".repeat(200));
        assert!(address(OsStr::new(&too_long)).is_err());
        // And a socket nobody listens on is not an error worth more than a debug line.
        let nowhere = std::env::temp_dir().join(format!("switchd-nowhere-{}", std::process::id()));
        notifier_for(address(nowhere.as_os_str()).unwrap()).ready("ready");
    }
}
