//! The uplink: a TUN device in switchd's own namespace that joins the networks' router
//! to the host. The host routes each non-internal network's subnet into it; what
//! containers send to addresses outside their network comes out of it into the host's
//! routing (and, for `--masquerade` networks, through the NAT rules in `nat`).
//!
//! Everything here acts on switchd's own namespace: the TUN, its routes, and the
//! `net.ipv4.ip_forward` switch, which is per namespace. Docker turns forwarding on the
//! same way when a bridge network needs it.

use std::sync::Arc;

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};
use switchyard_os::rtnl::{Link, Rtnl, MAIN_TABLE};

use crate::dataplane::{self, Shared, Thread};
use switchyard_os::tap::Tap;

/// The uplink's name unless `--uplink` says otherwise.
pub const DEFAULT_NAME: &str = "switchyard0";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The TUN device and the thread that reads it.
pub struct Uplink {
    link: Link,
    _thread: Thread,
}

impl Uplink {
    /// Creates the TUN `name`, brings it up, turns on IPv4 forwarding, and starts
    /// routing what the host sends into it.
    pub fn create(name: &str, shared: &Arc<Shared>) -> Result<Uplink> {
        let tun = Tap::create_tun(name).with_context(|| {
            format!("cannot create the uplink TUN {name} (choose another name with --uplink)")
        })?;
        // The router is IPv4 only: without IPv6 the host sends no router solicitations
        // or MLD reports into the uplink. Best effort: a kernel without IPv6 has no knob.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        // Published ports (see switchyard_os::nft): a client on 127.0.0.1 is DNATed into
        // the uplink, which the kernel allows only with route_localnet (and masquerades);
        // a container's hairpin comes in and goes out the uplink, which needs no ICMP
        // redirect telling the container to go direct. Best effort: without them only
        // those two cases fail.
        let conf = format!("/proc/sys/net/ipv4/conf/{name}");
        if let Err(err) = std::fs::write(format!("{conf}/route_localnet"), "1") {
            tracing::warn!(error = %err, "published ports will not answer on 127.0.0.1: cannot set {conf}/route_localnet");
        }
        let _ = std::fs::write(format!("{conf}/send_redirects"), "0");
        let mut rtnl = rtnl()?;
        let link = rtnl.link(name)?;
        rtnl.set_up(&link)?;
        std::fs::write(IP_FORWARD, "1").with_context(|| {
            format!("cannot turn on IPv4 forwarding ({IP_FORWARD}), which the uplink needs")
        })?;
        let tun = Arc::new(tun);
        shared.set_uplink(Some(Arc::clone(&tun)));
        let thread = dataplane::spawn_uplink(Arc::clone(shared), tun)
            .context("cannot start the uplink's thread")?;
        tracing::info!(name, ifindex = link.index, "uplink up");
        Ok(Uplink {
            link,
            _thread: thread,
        })
    }

    pub fn name(&self) -> &str {
        &self.link.name
    }

    pub fn ifindex(&self) -> u32 {
        self.link.index
    }

    /// Routes `subnet` into the uplink with the network's MTU as the path MTU, so the
    /// host never sends a container more than its interface takes.
    pub fn route(&self, subnet: Ipv4Net, mtu: u32) -> Result<()> {
        rtnl()?.replace_link_route(&self.link, IpNet::V4(subnet), Some(mtu))?;
        Ok(())
    }

    pub fn unroute(&self, subnet: Ipv4Net) -> Result<()> {
        rtnl()?.delete_link_route(&self.link, IpNet::V4(subnet))?;
        Ok(())
    }
}

/// The IPv4 destinations switchd's namespace already routes (main table, default route
/// left out), except through `uplink`: subnets a new network must not shadow.
pub fn host_routes(uplink: Option<u32>) -> Result<Vec<Ipv4Net>> {
    let routes = rtnl()?.all_routes()?;
    Ok(routes
        .into_iter()
        .filter(|r| r.table == MAIN_TABLE)
        .filter(|r| r.ifindex.is_none() || r.ifindex != uplink)
        .filter_map(|r| match r.destination {
            IpNet::V4(net) if net.prefix_len() > 0 => Some(net),
            _ => None,
        })
        .collect())
}

fn rtnl() -> Result<Rtnl> {
    Rtnl::open().context("cannot talk to the kernel's routing (rtnetlink)")
}
