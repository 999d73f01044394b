//! The resolver file of a named namespace: `/etc/netns/NAME/resolv.conf`, which
//! `ip netns exec NAME` mounts over `/etc/resolv.conf`, pointed at switchd's DNS on the
//! namespace's gateway.
//!
//! nsutil only ever changes a file it wrote (its first line says so): a file of the
//! operator's is left alone. The file names one nameserver (any of the namespace's
//! gateways answers for all of its networks) and searches each network's domain.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where `ip netns exec` looks.
pub const NETNS_ETC: &str = "/etc/netns";

const MARKER: &str = "# written by nsutil: switchd's DNS on the namespace's gateway";

/// What [`point_at_gateway`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// The file is (now) ours and names the gateway.
    Ours(PathBuf),
    /// The operator has a file of their own there: left as it is.
    Theirs(PathBuf),
}

fn file(root: &Path, name: &str) -> PathBuf {
    root.join(name).join("resolv.conf")
}

/// Makes `ROOT/NAME/resolv.conf` name `gateway` (if it names none yet) and search
/// `network`, unless it is someone else's file.
pub fn point_at_gateway(
    root: &Path,
    name: &str,
    gateway: Ipv4Addr,
    network: &str,
) -> io::Result<Written> {
    let path = file(root, name);
    let (nameserver, mut search) = match std::fs::read_to_string(&path) {
        Ok(text) if !text.starts_with(MARKER) => return Ok(Written::Theirs(path)),
        Ok(text) => parse(&text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => (None, Vec::new()),
        Err(err) => return Err(err),
    };
    if !search.iter().any(|d| d == network) {
        search.push(network.to_string());
    }
    let nameserver = nameserver.unwrap_or(gateway);
    let mut text = format!("{MARKER}\nnameserver {nameserver}\n");
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    std::fs::create_dir_all(path.parent().unwrap_or(root))?;
    // Written whole, then renamed: a reader never sees half a file.
    let partial = path.with_extension("conf.nsutil-new");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &path)?;
    Ok(Written::Ours(path))
}

/// Removes `ROOT/NAME/resolv.conf` if nsutil wrote it (and the directory, if that leaves
/// it empty). Whether a file was removed.
pub fn remove(root: &Path, name: &str) -> io::Result<bool> {
    let path = file(root, name);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.starts_with(MARKER) => {
            std::fs::remove_file(&path)?;
            let _ = std::fs::remove_dir(root.join(name));
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

fn parse(text: &str) -> (Option<Ipv4Addr>, Vec<String>) {
    let mut nameserver = None;
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                nameserver = nameserver.or_else(|| words.next().and_then(|w| w.parse().ok()))
            }
            Some("search") => search.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (nameserver, search)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ours_extends_it_and_leaves_theirs() {
        let root = std::env::temp_dir().join(format!("nsutil-resolv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let gw: Ipv4Addr = "10.10.0.1".parse().unwrap();
        let written = point_at_gateway(&root, "web", gw, "blue").unwrap();
        let path = file(&root, "web");
        assert_eq!(written, Written::Ours(path.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("nameserver 10.10.0.1\nsearch blue\n"),
            "{text}"
        );
        // A second network: the same nameserver, one more domain; twice changes nothing.
        point_at_gateway(&root, "web", "10.20.0.1".parse().unwrap(), "red").unwrap();
        point_at_gateway(&root, "web", "10.20.0.1".parse().unwrap(), "red").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("nameserver 10.10.0.1\nsearch blue red\n"),
            "{text}"
        );
        assert!(remove(&root, "web").unwrap());
        assert!(!root.join("web").exists());
        // The operator's own file stays as it is.
        std::fs::create_dir_all(root.join("db")).unwrap();
        std::fs::write(file(&root, "db"), "nameserver 192.0.2.53\n").unwrap();
        assert_eq!(
            point_at_gateway(&root, "db", gw, "blue").unwrap(),
            Written::Theirs(file(&root, "db"))
        );
        assert!(!remove(&root, "db").unwrap());
        assert_eq!(
            std::fs::read_to_string(file(&root, "db")).unwrap(),
            "nameserver 192.0.2.53\n"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
