//! Network namespaces: naming them, creating and deleting them the way `ip netns` does,
//! and running code inside one without moving the calling thread.
//!
//! A named namespace is a file under [`NETNS_RUN_DIR`] on which the namespace is
//! bind-mounted, so it outlives every process in it. Code runs inside a namespace on a
//! short-lived thread of its own ([`Netns::run`], [`run_in`]): `setns(2)` changes only
//! the calling thread, so the caller's namespace is never touched.
//!
//! An open [`Netns`] also knows its [`Identity`]: the nsfs device and inode (which tell
//! namespaces apart while both are alive) and the kernel's namespace cookie (which is
//! never reused within a boot, so it still proves "the same namespace" after a restart).
//! switchd, nsutil and the CNI plugin all open and enter namespaces through this module.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};
use serde::Serialize;

use crate::sys;

/// Where named namespaces live, as with `ip netns`.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The longest namespace name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Something went wrong naming, finding, creating, deleting or entering a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error(
        "invalid network namespace {text:?}: {reason}; give a name (red), an absolute path \
         (/run/netns/red, /proc/PID/ns/net) or pid:PID"
    )]
    InvalidRef { text: String, reason: &'static str },

    #[error("namespace {name} already exists ({NETNS_RUN_DIR}/{name}); delete it with `nsutil delete {name}` or pick another name")]
    Exists { name: String },

    #[error("{}", not_found_message(.reference))]
    NotFound { reference: NetnsRef },

    #[error("{}", not_netns_message(.reference, .found))]
    NotNetns {
        reference: NetnsRef,
        found: NotNetns,
    },

    /// A system call failed; `what` says which step.
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl NetnsError {
    fn os(what: impl Into<String>, source: impl Into<io::Error>) -> NetnsError {
        NetnsError::Os {
            what: what.into(),
            source: source.into(),
        }
    }
}

fn not_found_message(reference: &NetnsRef) -> String {
    let path = reference.path();
    match reference {
        NetnsRef::Named(name) => format!(
            "no such network namespace '{name}' ({}): create it with `nsutil create {name}`",
            path.display()
        ),
        NetnsRef::Pid(pid) => format!(
            "no such network namespace 'pid:{pid}' ({}): is process {pid} running?",
            path.display()
        ),
        NetnsRef::Path(_) => format!("no such network namespace {}", path.display()),
    }
}

/// What a file that should be a network namespace is instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotNetns {
    /// Not a namespace at all: a plain file, such as one left by a failed create.
    NotNamespace,
    /// A namespace of another kind, with its `/proc` name (`mnt:[4026531841]`) when
    /// known.
    OtherKind(Option<String>),
}

fn not_netns_message(reference: &NetnsRef, found: &NotNetns) -> String {
    let head = match reference {
        NetnsRef::Path(path) => format!("{} is not a network namespace", path.display()),
        other => format!(
            "'{other}' ({}) is not a network namespace",
            other.path().display()
        ),
    };
    match (found, reference) {
        (NotNetns::NotNamespace, NetnsRef::Named(name)) => format!(
            "{head}: the file is not a mounted namespace (left over from a failed create?); \
             remove it with `nsutil delete {name}`"
        ),
        (NotNetns::NotNamespace, _) => format!("{head}: it is not a namespace file"),
        (NotNetns::OtherKind(Some(kind)), _) => format!("{head}: it is {kind}"),
        (NotNetns::OtherKind(None), _) => format!("{head}: it is a namespace of another kind"),
    }
}

/// Checks a namespace name: what `nsutil create NAME` accepts.
pub fn validate_name(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not names")
    } else if name.contains('/') {
        Some("a name cannot contain '/'")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 64 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("a name cannot contain spaces or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetnsError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A network namespace as a user names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NetnsRef {
    /// A namespace under [`NETNS_RUN_DIR`] (`red` is `/run/netns/red`).
    Named(String),
    /// The namespace of a process (`pid:123` is `/proc/123/ns/net`).
    Pid(u32),
    /// Any other file a namespace is mounted on, or a `/proc/.../ns/net` link.
    Path(PathBuf),
}

impl NetnsRef {
    /// Parses user text: a bare name, an absolute path, or `pid:PID`.
    pub fn parse(text: &str) -> Result<NetnsRef, NetnsError> {
        let invalid = |reason| NetnsError::InvalidRef {
            text: text.to_string(),
            reason,
        };
        if let Some(pid) = text.strip_prefix("pid:") {
            let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
            return match pid.parse::<u32>() {
                Ok(pid) if digits && pid > 0 => Ok(NetnsRef::Pid(pid)),
                _ => Err(invalid("a process id is a positive whole number")),
            };
        }
        if text.starts_with('/') {
            return Ok(NetnsRef::from_path(text));
        }
        if text.contains('/') {
            return Err(invalid("a path must be absolute"));
        }
        validate_name(text)?;
        Ok(NetnsRef::Named(text.to_string()))
    }

    /// The namespace named `name` under [`NETNS_RUN_DIR`].
    pub fn named(name: &str) -> Result<NetnsRef, NetnsError> {
        validate_name(name)?;
        Ok(NetnsRef::Named(name.to_string()))
    }

    /// A namespace given by path. `/run/netns/NAME` and `/proc/PID/ns/net` are recognised,
    /// so they get the short labels `NAME` and `pid:PID`; the path itself is kept as is.
    pub fn from_path(path: impl Into<PathBuf>) -> NetnsRef {
        let path = path.into();
        if let Some(name) = path.file_name().and_then(|name| name.to_str()) {
            let canonical = Path::new(NETNS_RUN_DIR).join(name);
            // Compared as strings: Path equality would ignore doubled slashes.
            if validate_name(name).is_ok() && canonical.as_os_str() == path.as_os_str() {
                return NetnsRef::Named(name.to_string());
            }
        }
        if let Some(text) = path.to_str() {
            if let Some(pid) = text
                .strip_prefix("/proc/")
                .and_then(|rest| rest.strip_suffix("/ns/net"))
            {
                if pid.bytes().all(|b| b.is_ascii_digit()) && !pid.starts_with('0') {
                    if let Ok(pid) = pid.parse::<u32>() {
                        return NetnsRef::Pid(pid);
                    }
                }
            }
        }
        NetnsRef::Path(path)
    }

    /// The file to open.
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Named(name) => Path::new(NETNS_RUN_DIR).join(name),
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetnsRef::Path(path) => path.clone(),
        }
    }

    /// The name, for a namespace under [`NETNS_RUN_DIR`].
    pub fn name(&self) -> Option<&str> {
        match self {
            NetnsRef::Named(name) => Some(name),
            _ => None,
        }
    }

    /// A short label for messages and port names: `red`, `pid:123`, or the path.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for NetnsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsRef::Named(name) => f.write_str(name),
            NetnsRef::Pid(pid) => write!(f, "pid:{pid}"),
            NetnsRef::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for NetnsRef {
    type Err = NetnsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NetnsRef::parse(s)
    }
}

impl Serialize for NetnsRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The identity of a namespace: the device and inode of its nsfs file. Two paths to
/// the same namespace (`/run/netns/red`, `/proc/PID/ns/net`) have the same identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    /// The identity of the namespace at `path` (following `/proc` links). Does not check
    /// that the file is a namespace; [`Netns::open`] does.
    pub fn of(path: &Path) -> io::Result<NetnsId> {
        let meta = fs::metadata(path)?;
        Ok(NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The bytes hashed to derive stable per-namespace values (such as MAC addresses).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.dev.to_be_bytes());
        bytes[8..].copy_from_slice(&self.ino.to_be_bytes());
        bytes
    }
}

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// Which namespace something lives in, as switchd records it. `cookie` is what
/// identifies it across a restart: nsfs inode numbers are reused once a namespace is
/// gone, cookies never are (within one boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub cookie: u64,
}

/// An open network namespace: holding it keeps the namespace alive and pins it against
/// being deleted and recreated under the same name while it is used.
#[derive(Debug)]
pub struct Netns {
    file: File,
    id: NetnsId,
    cookie: u64,
    reference: NetnsRef,
}

impl Netns {
    /// Opens the namespace (never blocking, even on a FIFO) and checks that it is a
    /// network namespace.
    pub fn open(reference: &NetnsRef) -> Result<Netns, NetnsError> {
        let path = reference.path();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => NetnsError::NotFound {
                    reference: reference.clone(),
                },
                _ => NetnsError::os(format!("cannot open {}", path.display()), err),
            })?;
        let cookie = check_is_netns(&file, reference)?;
        let meta = file
            .metadata()
            .map_err(|err| NetnsError::os(format!("cannot stat {}", path.display()), err))?;
        Ok(Netns {
            file,
            id: NetnsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            cookie,
            reference: reference.clone(),
        })
    }

    /// The namespace behind an open descriptor (such as the one the kernel gives for a
    /// TAP's device), known as `reference` in messages.
    pub fn from_fd(fd: std::os::fd::OwnedFd, reference: NetnsRef) -> Result<Netns, NetnsError> {
        let file = File::from(fd);
        let cookie = check_is_netns(&file, &reference)?;
        let meta = file
            .metadata()
            .map_err(|err| NetnsError::os(format!("cannot stat namespace {reference}"), err))?;
        Ok(Netns {
            file,
            id: NetnsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            cookie,
            reference,
        })
    }

    /// Opens the namespace at `path` (`/run/netns/red`, `/proc/PID/ns/net`, ...).
    pub fn open_path(path: &Path) -> Result<Netns, NetnsError> {
        Netns::open(&NetnsRef::from_path(path))
    }

    /// The namespace the calling thread is in.
    pub fn current() -> Result<Netns, NetnsError> {
        Netns::open(&NetnsRef::Path(PathBuf::from("/proc/thread-self/ns/net")))
    }

    pub fn id(&self) -> NetnsId {
        self.id
    }

    /// Device, inode and cookie.
    pub fn identity(&self) -> Identity {
        Identity {
            dev: self.id.dev,
            ino: self.id.ino,
            cookie: self.cookie,
        }
    }

    pub fn reference(&self) -> &NetnsRef {
        &self.reference
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns what it
    /// returns. The calling thread's namespace never changes. A panic in `f` is resumed
    /// on the calling thread.
    pub fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send,
        E: From<NetnsError> + Send,
        F: FnOnce() -> Result<T, E> + Send,
    {
        let entered = on_thread_in(
            &self.file,
            &format!("netns {}", self.reference),
            |entered| {
                entered.map_err(|errno| {
                    E::from(NetnsError::os(
                        format!("cannot enter network namespace '{}'", self.reference),
                        errno,
                    ))
                })?;
                f()
            },
        );
        match entered {
            Ok(result) => result,
            Err(err) => Err(E::from(NetnsError::os(
                format!("cannot start a thread for namespace '{}'", self.reference),
                err,
            ))),
        }
    }
}

/// Runs `f` on a new scoped thread that has tried to enter the network namespace `file`;
/// `f` learns whether `setns` worked. The one place a thread enters a namespace.
fn on_thread_in<T: Send>(
    file: &File,
    name: &str,
    f: impl FnOnce(Result<(), Errno>) -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn_scoped(scope, || f(setns(file.as_fd(), CloneFlags::CLONE_NEWNET)))?;
        match thread.join() {
            Ok(result) => Ok(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The cookie of the namespace the calling thread is in.
fn current_cookie() -> Result<u64, io::Error> {
    let probe = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    sys::netns_cookie(probe.as_fd())
}

/// This boot's id: namespace cookies are only comparable within one boot.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// Refuses anything but a network namespace: an unmounted placeholder (not on nsfs),
/// or a namespace of another kind (which `setns` with `CLONE_NEWNET` rejects; trying it
/// on a throwaway thread needs no ioctl). That thread also reads the namespace's cookie.
fn check_is_netns(file: &File, reference: &NetnsRef) -> Result<u64, NetnsError> {
    let path = reference.path();
    let fs = fstatfs(file)
        .map_err(|errno| NetnsError::os(format!("cannot inspect {}", path.display()), errno))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(NetnsError::NotNetns {
            reference: reference.clone(),
            found: NotNetns::NotNamespace,
        });
    }
    let entered = on_thread_in(file, "netns check", |entered| {
        entered.map(|()| current_cookie())
    });
    match entered {
        Ok(Ok(Ok(cookie))) => Ok(cookie),
        Ok(Ok(Err(err))) => Err(NetnsError::os(
            format!("cannot read the cookie of network namespace '{reference}'"),
            err,
        )),
        Ok(Err(Errno::EINVAL)) => {
            let kind = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .ok()
                .map(|link| link.to_string_lossy().into_owned())
                .filter(|link| link.contains(":["));
            Err(NetnsError::NotNetns {
                reference: reference.clone(),
                found: NotNetns::OtherKind(kind),
            })
        }
        Ok(Err(errno)) => Err(NetnsError::os(
            format!("cannot enter network namespace '{reference}'"),
            errno,
        )),
        Err(err) => Err(NetnsError::os(
            "cannot start a thread to check the namespace",
            err,
        )),
    }
}

/// Opens the namespace and runs `f` inside it: [`Netns::open`] then [`Netns::run`].
pub fn run_in<T, E, F>(reference: &NetnsRef, f: F) -> Result<T, E>
where
    T: Send,
    E: From<NetnsError> + Send,
    F: FnOnce() -> Result<T, E> + Send,
{
    Netns::open(reference)?.run(f)
}

/// Serialises making [`NETNS_RUN_DIR`] a shared mount within this process, so concurrent
/// creates do not stack bind mounts.
static RUN_DIR_LOCK: Mutex<()> = Mutex::new(());

/// Makes [`NETNS_RUN_DIR`] exist and be a shared mount point, as `ip netns add` does, so
/// namespace mounts made later propagate to every mount namespace that shares it.
fn prepare_run_dir() -> Result<(), NetnsError> {
    let _guard = RUN_DIR_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = Path::new(NETNS_RUN_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|err| NetnsError::os(format!("cannot create {NETNS_RUN_DIR}"), err))?;
    let mut bound = false;
    loop {
        match mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            // Not a mount point yet: make it one by binding it onto itself, then retry.
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|errno| {
                    NetnsError::os(
                        format!("cannot bind-mount {NETNS_RUN_DIR} onto itself"),
                        errno,
                    )
                })?;
                bound = true;
            }
            Err(errno) => {
                return Err(NetnsError::os(
                    format!("cannot make {NETNS_RUN_DIR} a shared mount (are you root?)"),
                    errno,
                ))
            }
        }
    }
}

/// Creates the named namespace, like `ip netns add NAME`. On failure nothing is left
/// behind.
pub fn create(name: &str) -> Result<NetnsRef, NetnsError> {
    let reference = NetnsRef::named(name)?;
    prepare_run_dir()?;
    let path = reference.path();
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => NetnsError::Exists {
                name: name.to_string(),
            },
            _ => NetnsError::os(format!("cannot create {}", path.display()), err),
        })?;
    // unshare() moves only the calling thread, so do it on a thread that ends right after
    // pinning the new namespace to the file.
    let made = std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns create {name}"))
            .spawn_scoped(scope, || {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| {
                    NetnsError::os("cannot create a network namespace (are you root?)", errno)
                })?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| {
                    NetnsError::os(
                        format!("cannot bind-mount the new namespace on {}", path.display()),
                        errno,
                    )
                })
            })
            .map_err(|err| NetnsError::os("cannot start a thread to create the namespace", err))?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    if let Err(err) = made {
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    Ok(reference)
}

/// Deletes the named namespace, like `ip netns delete NAME`. Processes still inside it
/// keep it alive until they exit; the name is free at once.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let reference = NetnsRef::named(name)?;
    let path = reference.path();
    let not_found = || NetnsError::NotFound {
        reference: reference.clone(),
    };
    match fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(err) => {
            return Err(NetnsError::os(
                format!("cannot stat {}", path.display()),
                err,
            ))
        }
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point, a placeholder left by a failed create; just remove it.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(errno) => {
            return Err(NetnsError::os(
                format!("cannot unmount {}", path.display()),
                errno,
            ))
        }
    }
    fs::remove_file(&path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => not_found(),
        _ => NetnsError::os(format!("cannot remove {}", path.display()), err),
    })
}

/// The names under [`NETNS_RUN_DIR`], sorted. No directory means no namespaces.
pub fn list() -> Result<Vec<String>, NetnsError> {
    let entries = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(NetnsError::os(format!("cannot read {NETNS_RUN_DIR}"), err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|err| NetnsError::os(format!("cannot read {NETNS_RUN_DIR}"), err))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_live_under_run_netns() {
        let ns = NetnsRef::parse("red").unwrap();
        assert_eq!(ns, NetnsRef::Named("red".into()));
        assert_eq!(ns.path(), Path::new("/run/netns/red"));
        assert_eq!(ns.label(), "red");
        assert_eq!(ns.name(), Some("red"));
    }

    #[test]
    fn pid_form_points_into_proc() {
        let ns: NetnsRef = "pid:123".parse().unwrap();
        assert_eq!(ns, NetnsRef::Pid(123));
        assert_eq!(ns.path(), Path::new("/proc/123/ns/net"));
        assert_eq!(ns.label(), "pid:123");
        for bad in [
            "pid:",
            "pid:0",
            "pid:-1",
            "pid:abc",
            "pid:1 ",
            "pid:99999999999",
        ] {
            assert!(NetnsRef::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn absolute_paths_are_kept_as_is() {
        let ns = NetnsRef::parse("/var/run/docker/netns/abc").unwrap();
        assert_eq!(ns.path(), Path::new("/var/run/docker/netns/abc"));
        assert_eq!(ns.label(), "/var/run/docker/netns/abc");
        assert_eq!(ns.name(), None);
        // Well-known forms get short labels but keep their path.
        let named = NetnsRef::parse("/run/netns/red").unwrap();
        assert_eq!(named, NetnsRef::Named("red".into()));
        assert_eq!(named.path(), Path::new("/run/netns/red"));
        let pid = NetnsRef::parse("/proc/42/ns/net").unwrap();
        assert_eq!(pid, NetnsRef::Pid(42));
        assert_eq!(pid.path(), Path::new("/proc/42/ns/net"));
        // Anything else under those directories stays a plain path.
        for odd in [
            "/run/netns/a/b",
            "/run/netns/",
            "/proc/self/ns/net",
            "/proc/042/ns/net",
        ] {
            let ns = NetnsRef::parse(odd).unwrap();
            assert_eq!(ns, NetnsRef::Path(odd.into()), "{odd}");
            assert_eq!(ns.path(), Path::new(odd));
        }
    }

    #[test]
    fn names_are_validated() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in ["", ".", "..", "a b", "tab\there", "nul\0", long.as_str()] {
            assert!(NetnsRef::parse(bad).is_err(), "{bad:?} parsed");
            assert!(validate_name(bad).is_err(), "{bad:?} validated");
        }
        assert!(matches!(
            NetnsRef::parse("a/b"),
            Err(NetnsError::InvalidRef { .. })
        ));
        let ok = "x".repeat(MAX_NAME_LEN);
        for good in ["red", "syt-ns-1-2", "cni-3f2c9a", "a.b", "_x", ok.as_str()] {
            assert!(NetnsRef::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let missing = NetnsError::NotFound {
            reference: NetnsRef::Named("red".into()),
        };
        assert_eq!(
            missing.to_string(),
            "no such network namespace 'red' (/run/netns/red): create it with `nsutil create red`"
        );
        let gone = NetnsError::NotFound {
            reference: NetnsRef::Pid(7),
        };
        assert!(gone.to_string().contains("is process 7 running?"), "{gone}");
        let exists = NetnsError::Exists { name: "red".into() };
        assert!(
            exists
                .to_string()
                .starts_with("namespace red already exists"),
            "{exists}"
        );
        let placeholder = NetnsError::NotNetns {
            reference: NetnsRef::Named("red".into()),
            found: NotNetns::NotNamespace,
        };
        assert!(
            placeholder.to_string().contains("`nsutil delete red`"),
            "{placeholder}"
        );
        let mnt = NetnsError::NotNetns {
            reference: NetnsRef::Path("/proc/1/ns/mnt".into()),
            found: NotNetns::OtherKind(Some("mnt:[4026531841]".into())),
        };
        assert_eq!(
            mnt.to_string(),
            "/proc/1/ns/mnt is not a network namespace: it is mnt:[4026531841]"
        );
    }

    #[test]
    fn identity_bytes_are_stable() {
        let id = NetnsId {
            dev: 4,
            ino: 4026531840,
        };
        assert_eq!(id.to_bytes()[..8], [0, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(id.to_bytes()[8..], 4026531840u64.to_be_bytes());
        assert_eq!(id.to_string(), "net:[4026531840]");
    }
}
