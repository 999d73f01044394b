//! Open vSwitch for the `ovs` scenario: its userspace (netdev) datapath with TAP ports, as
//! `shared/anchors/ovs_netdev.sh` measures it, with userspace TSO on.
//!
//! OVS reads `other_config:userspace-tso-enable` only when ovs-vswitchd starts. So when
//! ovs-vswitchd is not running, the bench starts it (`ovs-ctl`) with the option set, and on
//! drop puts the option back as it was and stops what it started: the machine is left as
//! found. An ovs-vswitchd that was already running is used as it is, and its TSO setting is
//! reported, not changed.

use std::path::Path;

use anyhow::{Context, Result};

use crate::topo::sh;

const OVS_CTL: &str = "/usr/share/openvswitch/scripts/ovs-ctl";
const TSO_KEY: &str = "other_config:userspace-tso-enable";

/// Whether Open vSwitch's daemon is installed (the scenario is skipped otherwise).
pub fn installed() -> bool {
    crate::on_path("ovs-vswitchd") || Path::new("/usr/sbin/ovs-vswitchd").exists()
}

/// `ovs-vswitchd --version`'s first line, when installed.
pub fn version() -> Option<String> {
    let out = sh(&["ovs-vswitchd", "--version"]).ok()?;
    out.lines().next().map(|l| l.trim().to_string())
}

pub struct Ovs {
    started_db: bool,
    started_vswitchd: bool,
    /// The TSO option's value before the bench set it (inner `None`: it was unset), when
    /// the bench set it.
    previous_tso: Option<Option<String>>,
    tso: bool,
}

impl Ovs {
    /// Makes sure ovsdb-server and ovs-vswitchd run, starting what does not (with
    /// userspace TSO on).
    pub fn start() -> Result<Ovs> {
        let mut ovs = Ovs {
            started_db: false,
            started_vswitchd: false,
            previous_tso: None,
            tso: false,
        };
        // `--no-wait`: without it ovs-vsctl waits for an ovs-vswitchd that may not run.
        if sh(&["ovs-vsctl", "--no-wait", "--timeout=5", "show"]).is_err() {
            sh(&[OVS_CTL, "--no-ovs-vswitchd", "start", "--system-id=random"])
                .context("cannot start ovsdb-server")?;
            ovs.started_db = true;
        }
        let current = sh(&[
            "ovs-vsctl",
            "--no-wait",
            "--if-exists",
            "get",
            "Open_vSwitch",
            ".",
            TSO_KEY,
        ])?;
        let current = current.trim().trim_matches('"');
        let current = (!current.is_empty()).then(|| current.to_string());
        if sh(&["ovs-appctl", "-t", "ovs-vswitchd", "version"]).is_ok() {
            ovs.tso = current.as_deref() == Some("true");
            if !ovs.tso {
                println!(
                    "   note: the running ovs-vswitchd has userspace TSO off; measuring it as it is"
                );
            }
            return Ok(ovs);
        }
        ovs.previous_tso = Some(current);
        sh(&[
            "ovs-vsctl",
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("{TSO_KEY}=true"),
        ])?;
        sh(&[OVS_CTL, "--no-ovsdb-server", "start"]).context("cannot start ovs-vswitchd")?;
        ovs.started_vswitchd = true;
        ovs.tso = true;
        Ok(ovs)
    }

    /// ovs-vswitchd's process id (the daemon, not its monitor).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string("/var/run/openvswitch/ovs-vswitchd.pid")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn tso(&self) -> bool {
        self.tso
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        match self.previous_tso.take() {
            Some(Some(value)) => {
                let set = format!("{TSO_KEY}={value}");
                let _ = sh(&["ovs-vsctl", "--no-wait", "set", "Open_vSwitch", ".", &set]);
            }
            Some(None) => {
                let _ = sh(&[
                    "ovs-vsctl",
                    "--no-wait",
                    "remove",
                    "Open_vSwitch",
                    ".",
                    "other_config",
                    "userspace-tso-enable",
                ]);
            }
            None => {}
        }
        if self.started_vswitchd {
            let _ = sh(&[OVS_CTL, "--no-ovsdb-server", "stop"]);
        }
        if self.started_db {
            let _ = sh(&[OVS_CTL, "--no-ovs-vswitchd", "stop"]);
        }
    }
}
