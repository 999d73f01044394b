//! TAP ports: a persistent TAP device living in a container's network namespace, opened
//! with a `virtio_net_hdr` before every frame and TCP/UDP segmentation offloads on.
//!
//! switchd creates the TAP *inside* the target namespace (from a short-lived thread that
//! has entered it), so it gets its final name there and never has to be moved. The file
//! descriptor keeps working from switchd's own namespace. Because the TAP is persistent,
//! it survives switchd stopping; a restarted switchd finds it again by its interface index.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::netns::{Netns, NetnsError, NetnsRef};
use crate::rtnl::Rtnl;
use crate::sys;

impl AsFd for Tap {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What went wrong with a TAP; each message names the interface and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("interface {0} already exists in that namespace; pick another name with --ifname (if it is a TAP left over from an earlier switchd, remove it with `ip -n NAMESPACE link del {0}`)")]
    NameTaken(String),
    #[error("cannot open /dev/net/tun ({0}); is the tun module loaded and are you root?")]
    OpenTun(#[source] io::Error),
    #[error("cannot create TAP {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot enable offloads on TAP {name}: {source}")]
    Offload {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot make TAP {name} persistent: {source}")]
    Persist {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot reattach to TAP {name}: {source}")]
    Reattach {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("no interface with index {0} in that namespace: it was deleted inside the container; remove the port with `swctl port del` and attach again")]
    NoSuchIfindex(u32),
    #[error("cannot find where TAP {name} is now: {source}")]
    Locate {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove TAP {name}: {source}")]
    Destroy {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot look up interfaces in the namespace: {0}")]
    Lookup(#[source] nix::Error),
}

const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
const TUN_FLAGS: libc::c_int = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
const OFFLOADS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// UDP segmentation offload; kernels before 6.2 refuse it, and then we go without.
const OFFLOADS_USO: libc::c_uint = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// An open, persistent TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
}

impl Tap {
    /// Creates the persistent TAP `ifname` inside the namespace `netns`.
    pub fn create_in(netns: &Netns, ifname: &str) -> Result<Tap, TapError> {
        netns.run(|| {
            if nix::net::if_::if_nametoindex(ifname).is_ok() {
                return Err(TapError::NameTaken(ifname.to_string()));
            }
            let tap = Tap::open(ifname)?;
            if let Err(source) = sys::tun_set_persist(tap.fd.as_fd(), true) {
                // Not persistent yet: closing the descriptor removes the device.
                return Err(TapError::Persist {
                    name: ifname.to_string(),
                    source,
                });
            }
            Ok(tap)
        })
    }

    /// Attaches to the persistent TAP with interface index `ifindex` inside `netns`,
    /// whatever it is called now.
    pub fn reopen_in(netns: &Netns, ifindex: u32) -> Result<Tap, TapError> {
        netns.run(|| {
            let interfaces = nix::net::if_::if_nameindex().map_err(TapError::Lookup)?;
            let name = interfaces
                .iter()
                .find(|i| i.index() == ifindex)
                .map(|i| i.name().to_string_lossy().into_owned())
                .ok_or(TapError::NoSuchIfindex(ifindex))?;
            Tap::open(&name).map_err(|err| match err {
                TapError::Create { name, source } => TapError::Reattach { name, source },
                other => other,
            })
        })
    }

    /// Attaches to the persistent TAP called `name` inside `netns`, if there is one
    /// (`None` when no interface has that name, or it is not a TAP).
    pub fn attach_in(netns: &Netns, name: &str) -> Result<Option<Tap>, TapError> {
        netns.run(|| {
            if nix::net::if_::if_nametoindex(name).is_err() {
                return Ok(None);
            }
            match Tap::open(name) {
                Ok(tap) => Ok(Some(tap)),
                // An interface of another kind by that name: not ours.
                Err(TapError::Create { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    Ok(None)
                }
                Err(err) => Err(err),
            }
        })
    }

    /// Creates the TUN device `name` in the calling thread's namespace: IP packets, no
    /// link header, with a vnet header and TCP offloads like a TAP port. Not persistent:
    /// it goes away with switchd, and with it every route through it.
    pub fn create_tun(name: &str) -> Result<Tap, TapError> {
        if nix::net::if_::if_nametoindex(name).is_ok() {
            return Err(TapError::NameTaken(name.to_string()));
        }
        Tap::open_with(name, TUN_FLAGS, OFFLOADS, 0)
    }

    /// Opens /dev/net/tun in the calling thread's namespace and attaches it to `name`.
    fn open(name: &str) -> Result<Tap, TapError> {
        Tap::open_with(name, TAP_FLAGS, OFFLOADS, OFFLOADS_USO)
    }

    fn open_with(
        name: &str,
        flags: libc::c_int,
        offloads: libc::c_uint,
        optional_offloads: libc::c_uint,
    ) -> Result<Tap, TapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let fd = OwnedFd::from(file);
        let name =
            sys::tun_set_iff(fd.as_fd(), name, flags).map_err(|source| TapError::Create {
                name: name.to_string(),
                source,
            })?;
        let offload_err = |source| TapError::Offload {
            name: name.clone(),
            source,
        };
        if sys::tun_set_offload(fd.as_fd(), offloads | optional_offloads).is_err() {
            sys::tun_set_offload(fd.as_fd(), offloads).map_err(offload_err)?;
        }
        let ifindex = nix::net::if_::if_nametoindex(name.as_str()).map_err(TapError::Lookup)?;
        Ok(Tap { fd, name, ifindex })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads one wire image (vnet header + frame). `WouldBlock` when there is none.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(&self.fd, buf).map_err(io::Error::from)
    }

    /// Writes one wire image (vnet header + frame).
    pub fn write(&self, wire: &[u8]) -> io::Result<usize> {
        nix::unistd::write(&self.fd, wire).map_err(io::Error::from)
    }

    /// Where the device is now, wherever it was moved or renamed since it was opened: its
    /// namespace, name and interface index there.
    pub fn locate(&self) -> Result<(crate::netns::Identity, String, u32), TapError> {
        let failed = |source: io::Error| TapError::Locate {
            name: self.name.clone(),
            source,
        };
        let netns = sys::tun_device_netns(self.fd.as_fd()).map_err(failed)?;
        let netns = Netns::from_fd(netns, NetnsRef::Path(format!("of {}", self.name).into()))?;
        let name = sys::tun_get_name(self.fd.as_fd()).map_err(failed)?;
        let ifindex = netns.run(|| {
            nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| failed(io::Error::from(e)))
        })?;
        Ok((netns.identity(), name, ifindex))
    }

    /// Removes the device now: clears persistence (so that nothing is left even if the
    /// deletion below fails), then deletes the interface over rtnetlink inside the
    /// namespace the device lives in, found through the descriptor itself, so it works
    /// however the namespace's path has changed since. Descriptors still open elsewhere
    /// only see errors from then on.
    pub fn destroy(&self) -> Result<(), TapError> {
        let failed = |source: io::Error| TapError::Destroy {
            name: self.name.clone(),
            source,
        };
        sys::tun_set_persist(self.fd.as_fd(), false).map_err(failed)?;
        let netns = sys::tun_device_netns(self.fd.as_fd()).map_err(failed)?;
        let netns = Netns::from_fd(netns, NetnsRef::Path(format!("of {}", self.name).into()))?;
        netns.run(|| {
            let mut rtnl = Rtnl::open().map_err(|e| failed(io::Error::other(e)))?;
            rtnl.delete_link(self.ifindex)
                .map_err(|e| failed(io::Error::other(e)))
        })
    }
}
