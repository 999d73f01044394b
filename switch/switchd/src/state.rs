//! What switchd keeps in its state directory so that a restart finds every port again.
//!
//! `state.json` holds the ports (which namespace, which interface index, which VLAN mode),
//! the static FDB entries, the overlay, and the networks with their endpoints (IPAM's
//! allocations). It is replaced atomically: written to a temporary file,
//! synced, renamed over the old one, and the directory synced, so a crash at any point
//! leaves either the old state or the new one, never a torn file. `lock` is held with
//! `flock` for switchd's lifetime so two daemons never share a state directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
pub use switchyard::controller::state::{SavedState, VERSION};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// The state directory, locked for this process.
pub struct StateStore {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl StateStore {
    /// Creates (mode 0700) and locks `dir`.
    pub fn open(dir: &Path) -> Result<StateStore> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "another switchd is using the state directory {}; stop it or pass a different --state-dir",
                dir.display()
            ),
            Err((_, err)) => return Err(err).with_context(|| format!("cannot lock {}", lock_path.display())),
        };
        Ok(StateStore {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved state, or an empty one if there is none yet.
    pub fn load(&self) -> Result<SavedState> {
        let path = self.dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SavedState::default())
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: SavedState = serde_json::from_str(&text).with_context(|| {
            format!(
                "state file {} is corrupt; move it aside to start with no ports",
                path.display()
            )
        })?;
        if state.version != VERSION {
            bail!(
                "state file {} has version {}, this switchd understands {VERSION}",
                path.display(),
                state.version
            );
        }
        state.check().map_err(anyhow::Error::msg).with_context(|| {
            format!(
                "state file {} is inconsistent; move it aside to start with no ports",
                path.display()
            )
        })?;
        Ok(state)
    }

    /// Replaces the saved state atomically.
    pub fn save(&self, state: &SavedState) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(state).context("cannot encode state")?;
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
        // The rename is the commit point: the new state is in place. Syncing the
        // directory only makes it durable sooner, so a failure there is not a failure
        // of the change (undoing it would leave memory and file disagreeing).
        if let Err(err) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
            tracing::warn!(
                "cannot sync the state directory {}: {err}",
                self.dir.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::control::VniMapping;
    use switchyard::controller::state::{SavedFdbEntry, SavedOverlay, SavedPeer, SavedPort};
    use switchyard::network::{Endpoint, Network};
    use switchyard::wire::VlanId;
    use switchyard::{PortId, PortMode};

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("switchd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn sample() -> SavedState {
        SavedState {
            version: VERSION,
            boot_id: "5e2b4ac0-0000-4000-8000-000000000001".into(),
            next_port_id: 8,
            ports: vec![SavedPort {
                id: PortId(2),
                label: "red".into(),
                netns: "/run/netns/red".into(),
                netns_dev: 4,
                netns_ino: 4026532000,
                netns_cookie: 4097,
                ifname: "eth0".into(),
                ifindex: 5,
                mode: PortMode::Access {
                    vlan: VlanId::new(10).unwrap(),
                },
                mac: None,
                addresses: Vec::new(),
                port_security: None,
                storm_limit_pps: None,
                pending: None,
                kind: Default::default(),
            }],
            static_fdb: vec![SavedFdbEntry {
                vlan: VlanId::new(10).unwrap(),
                mac: "02:42:0a:00:00:09".parse().unwrap(),
                port: PortId(2),
            }],
            overlay: SavedOverlay {
                map: vec![VniMapping {
                    vlan: VlanId::new(10).unwrap(),
                    vni: switchyard_encap::Vni::new(42).unwrap(),
                }],
                peers: vec![SavedPeer {
                    id: PortId(7),
                    addr: "192.0.2.2:4789".parse().unwrap(),
                }],
            },
            vtep: Some("192.0.2.1:4789".parse().unwrap()),
            networks: vec![Network {
                name: "blue".into(),
                id: "ab".repeat(32),
                subnet: "10.10.0.0/24".parse().unwrap(),
                gateway: "10.10.0.1".parse().unwrap(),
                vlan: VlanId::new(3000).unwrap(),
                vni: None,
                ip_range: None,
                mtu: 1500,
                internal: false,
                masquerade: true,
                created: 1_795_000_000,
                last_allocated: Some("10.10.0.2".parse().unwrap()),
                scope: Default::default(),
                local_ids: Vec::new(),
                parent: None,
                aux_addresses: Vec::new(),
            }],
            endpoints: vec![Endpoint {
                network: "blue".into(),
                port: PortId(2),
                ip: "10.10.0.2".parse().unwrap(),
                mac: "02:42:0a:0a:00:02".parse().unwrap(),
                container_id: None,
                published: Vec::new(),
                name: Some("web".into()),
                aliases: vec!["api".into()],
            }],
            reservations: Vec::new(),
            nat_pending: false,
        }
    }

    #[test]
    fn an_address_held_twice_is_refused() {
        let dir = temp_dir("ipam-dup");
        let store = StateStore::open(&dir).unwrap();
        let mut state = sample();
        let mut port = state.ports[0].clone();
        port.id = PortId(3);
        port.ifname = "eth1".into();
        state.ports.push(port);
        state.endpoints.push(Endpoint {
            port: PortId(3),
            ..state.endpoints[0].clone()
        });
        store.save(&state).unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(err.contains("held twice"), "{err}");
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = temp_dir("roundtrip");
        let store = StateStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), SavedState::default());
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), sample());
        assert!(!dir.join("state.json.tmp").exists());
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inconsistent_state_is_refused() {
        let dir = temp_dir("dup");
        let store = StateStore::open(&dir).unwrap();
        let mut state = sample();
        state.ports.push(state.ports[0].clone());
        store.save(&state).unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(err.contains("used twice"), "{err}");
        let mut state = sample();
        state.next_port_id = 7;
        store.save(&state).unwrap();
        assert!(format!("{:#}", store.load().unwrap_err()).contains("next_port_id"));
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_file_without_an_overlay_still_loads() {
        let dir = temp_dir("v1");
        let store = StateStore::open(&dir).unwrap();
        fs::write(
            dir.join(STATE_FILE),
            br#"{"version":1,"next_port_id":1,"ports":[],"static_fdb":[]}"#,
        )
        .unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.overlay, SavedOverlay::default());
        assert_eq!(loaded.vtep, None, "no VTEP remembered");
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_daemon_cannot_take_the_directory() {
        let dir = temp_dir("lock");
        let first = StateStore::open(&dir).unwrap();
        let err = StateStore::open(&dir)
            .err()
            .expect("second open must fail")
            .to_string();
        assert!(
            err.contains("another switchd is using the state directory"),
            "{err}"
        );
        drop(first);
        StateStore::open(&dir).expect("free again once the first is gone");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let dir = temp_dir("corrupt");
        let store = StateStore::open(&dir).unwrap();
        fs::write(dir.join(STATE_FILE), b"{\"version\": 1, \"ports\": [").unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(err.contains("is corrupt"), "{err}");
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }
}
