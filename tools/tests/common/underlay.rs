//! An underlay for tests of several hosts: a namespace holding a kernel bridge `br0`
//! (192.0.2.0/24, inside the test's namespaces only), to which namespaces are joined by
//! veth pairs made from inside it. Dropped, its namespace goes and every veth with it.

use super::Netns;

pub struct Underlay {
    pub ns: Netns,
    ports: usize,
}

impl Underlay {
    pub fn new() -> Underlay {
        let ns = Netns::new("u");
        ns.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        ns.exec_ok(&["ip", "link", "set", "br0", "up"]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        Underlay { ns, ports: 0 }
    }

    /// A new namespace whose `u0` is on the bridge at `addr`/24.
    pub fn plug(&mut self, tag: &str, addr: &str) -> Netns {
        let ns = Netns::new(tag);
        self.join(&ns, addr);
        ns
    }

    /// Puts `ns` on the bridge: its `u0` at `addr`/24.
    pub fn join(&mut self, ns: &Netns, addr: &str) {
        let port = format!("p{}", self.ports);
        self.ports += 1;
        // Made from inside the underlay: both ends are born in the test's namespaces.
        self.ns.exec_ok(&[
            "ip", "link", "add", &port, "type", "veth", "peer", "name", "u0", "netns", &ns.name,
        ]);
        self.ns
            .exec_ok(&["ip", "link", "set", &port, "master", "br0"]);
        self.ns.exec_ok(&["ip", "link", "set", &port, "up"]);
        let cidr = format!("{addr}/24");
        ns.exec_ok(&["ip", "addr", "add", &cidr, "dev", "u0"]);
        ns.exec_ok(&["ip", "link", "set", "u0", "up"]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    }
}
