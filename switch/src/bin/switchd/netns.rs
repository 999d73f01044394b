//! Network namespaces as switchd sees them: opened without ever blocking, checked to
//! really be network namespaces, identified in a way the kernel never reuses, and
//! entered only by short-lived helper threads.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use crate::sys;

/// Entering a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("cannot start a thread to enter the namespace: {0}")]
    Spawn(#[source] io::Error),
    #[error("cannot enter the network namespace: {0}")]
    Setns(#[source] nix::Error),
}

/// Which namespace a port lives in. `cookie` is what identifies it: nsfs inode numbers
/// are reused once a namespace is gone, cookies never are (within one boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub cookie: u64,
}

/// Opens the namespace file at `path` (never blocking, even on a FIFO) and checks that it
/// is a namespace.
pub fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let fs = fstatfs(&file).map_err(io::Error::from)?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a namespace (expected /run/netns/NAME or /proc/PID/ns/net)",
                path.display()
            ),
        ));
    }
    Ok(file)
}

/// Device and inode of an open namespace file: enough to tell namespaces apart while
/// both are alive (a TAP keeps its namespace alive).
pub fn inode(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// The full identity of the namespace `file` refers to. Fails if it is not a *network*
/// namespace.
pub fn identity(file: &File) -> Result<Identity, EnterError> {
    let (dev, ino) = inode(file).map_err(EnterError::Spawn)?;
    let cookie = in_netns(file, || {
        let probe = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| EnterError::Spawn(e.into()))?;
        sys::netns_cookie(probe.as_fd()).map_err(EnterError::Spawn)
    })?;
    Ok(Identity { dev, ino, cookie })
}

/// This boot's id: cookies are only comparable within one boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// Runs `f` on a thread that has entered the network namespace `netns`. The calling
/// thread's namespace never changes; the helper thread ends with `f`.
pub fn in_netns<T: Send, E: Send + From<EnterError>>(
    netns: &File,
    f: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, E> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(scope, || {
                setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(EnterError::Setns)?;
                f()
            })
            .map_err(EnterError::Spawn)?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
