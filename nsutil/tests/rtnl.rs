//! The rtnetlink client against real interfaces inside a test namespace, as root.
//!
//! This kernel has no `dummy` driver, so the fixture is a veth pair with both ends in the
//! namespace (it also gives the link a carrier, which IPv6 wants).

mod common;

use std::net::IpAddr;

use common::TestNs;
use ipnet::IpNet;
use nix::errno::Errno;
use nsutil::netns::run_in;
use nsutil::rtnl::{Added, Rtnl, RtnlError, MAIN_TABLE};
use switchyard::wire::MacAddr;

fn with_veth() -> TestNs {
    let ns = TestNs::new();
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d0p"]);
    ns.ip(&["link", "set", "d0p", "up"]);
    ns
}

#[test]
#[ignore = "needs root; run by make test"]
fn link_settings() {
    let ns = with_veth();
    let mac: MacAddr = "02:42:0a:00:00:07".parse().unwrap();
    let link = run_in(&ns.reference(), || {
        let mut rtnl = Rtnl::open()?;
        assert!(rtnl.link_exists("d0")?);
        assert!(!rtnl.link_exists("nope0")?);
        let link = rtnl.link("d0")?;
        assert_eq!(rtnl.link_index("d0")?, link.index);
        assert_eq!(rtnl.link_by_index(link.index)?, link);
        assert!(!link.up);
        rtnl.set_mac(&link, mac)?;
        rtnl.set_mtu(&link, 9000)?;
        rtnl.set_up(&link)?;
        let names: Vec<String> = rtnl.links()?.into_iter().map(|l| l.name).collect();
        assert!(names.contains(&"lo".to_string()) && names.contains(&"d0".to_string()));
        Ok::<_, anyhow::Error>(rtnl.link("d0")?)
    })
    .unwrap();
    assert_eq!(link.mac, Some(mac));
    assert_eq!(link.mtu, 9000);
    assert!(link.up);
    // `ip` agrees.
    let shown = ns.ip(&["link", "show", "d0"]);
    assert!(shown.contains("mtu 9000"), "{shown}");
    assert!(shown.contains("02:42:0a:00:00:07"), "{shown}");
    assert!(shown.contains(",UP"), "{shown}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn addresses_and_routes_are_idempotent() {
    let ns = with_veth();
    let v4: IpNet = "10.0.0.1/24".parse().unwrap();
    let v6: IpNet = "fd00::2/64".parse().unwrap();
    let gw4: IpAddr = "10.0.0.254".parse().unwrap();
    let gw6: IpAddr = "fd00::1".parse().unwrap();
    run_in(&ns.reference(), || {
        let mut rtnl = Rtnl::open()?;
        let link = rtnl.link("d0")?;
        rtnl.set_up(&link)?;
        assert_eq!(rtnl.add_address(&link, v4)?, Added::Created);
        assert_eq!(rtnl.add_address(&link, v4)?, Added::AlreadyPresent);
        assert_eq!(rtnl.add_address(&link, v6)?, Added::Created);
        assert_eq!(rtnl.add_address(&link, v6)?, Added::AlreadyPresent);
        let addresses = rtnl.addresses(&link)?;
        assert!(addresses.contains(&v4), "{addresses:?}");
        assert!(addresses.contains(&v6), "{addresses:?}");

        assert_eq!(rtnl.add_default_route(&link, gw4)?, Added::Created);
        assert_eq!(rtnl.add_default_route(&link, gw4)?, Added::AlreadyPresent);
        assert_eq!(rtnl.add_default_route(&link, gw6)?, Added::Created);
        assert_eq!(rtnl.add_default_route(&link, gw6)?, Added::AlreadyPresent);
        let routes = rtnl.routes(&link)?;
        for gw in [gw4, gw6] {
            assert!(
                routes
                    .iter()
                    .any(|r| r.is_default() && r.gateway == Some(gw) && r.table == MAIN_TABLE),
                "{routes:?}"
            );
        }
        assert!(routes
            .iter()
            .any(|r| r.destination == "10.0.0.0/24".parse::<IpNet>().unwrap()));

        // Another default route is refused, and says which one is in the way.
        let other = rtnl
            .add_default_route(&link, "10.0.0.253".parse().unwrap())
            .unwrap_err();
        assert!(
            matches!(other, RtnlError::OtherDefaultRoute { .. }),
            "{other}"
        );
        assert!(
            other.to_string().contains("via 10.0.0.254 dev d0"),
            "{other}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .unwrap();
    let shown = ns.ip(&["-4", "route", "show", "default"]);
    assert!(shown.contains("default via 10.0.0.254 dev d0"), "{shown}");
    let shown = ns.ip(&["-6", "route", "show", "default"]);
    assert!(shown.contains("default via fd00::1 dev d0"), "{shown}");
    let shown = ns.ip(&["addr", "show", "d0"]);
    assert!(shown.contains("inet 10.0.0.1/24 brd 10.0.0.255"), "{shown}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn errors_name_what_failed() {
    let ns = with_veth();
    run_in(&ns.reference(), || {
        let mut rtnl = Rtnl::open()?;
        let missing = rtnl.link("nope0").unwrap_err();
        assert!(matches!(missing, RtnlError::NoSuchLink { .. }));
        assert_eq!(
            missing.to_string(),
            "no interface named nope0 in this network namespace"
        );
        assert!(matches!(
            rtnl.link_by_index(999_999),
            Err(RtnlError::NoSuchIndex { .. })
        ));
        assert!(matches!(
            rtnl.link("bad/name"),
            Err(RtnlError::InvalidName(_))
        ));

        let link = rtnl.link("d0")?;
        let err = rtnl.set_mtu(&link, 70_000).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EINVAL));
        let text = err.to_string();
        assert!(
            text.starts_with("setting the MTU of d0 to 70000 failed: Invalid argument"),
            "{text}"
        );

        // A gateway the interface cannot reach.
        rtnl.set_up(&link)?;
        let err = rtnl
            .add_default_route(&link, "192.0.2.1".parse().unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("adding a default route via 192.0.2.1 dev d0 failed"),
            "{err}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .unwrap();
}

#[test]
#[ignore = "needs root; run by make test"]
fn rename_only_while_down() {
    let ns = with_veth();
    run_in(&ns.reference(), || {
        let mut rtnl = Rtnl::open()?;
        let link = rtnl.link("d0")?;
        rtnl.rename(&link, "eth7")?;
        let renamed = rtnl.link("eth7")?;
        assert_eq!(renamed.index, link.index);
        assert!(!rtnl.link_exists("d0")?);
        rtnl.set_up(&renamed)?;
        let err = rtnl.rename(&renamed, "eth8").unwrap_err();
        assert!(matches!(err, RtnlError::LinkIsUp { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "cannot rename eth7 while it is up; bring it down first"
        );
        rtnl.set_down(&renamed)?;
        rtnl.rename(&renamed, "eth8")?;
        assert!(rtnl.link_exists("eth8")?);
        // A name that is taken.
        let eth8 = rtnl.link("eth8")?;
        let err = rtnl.rename(&eth8, "d0p").unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EEXIST), "{err}");
        Ok::<_, anyhow::Error>(())
    })
    .unwrap();
}
