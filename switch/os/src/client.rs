//! The blocking client of switchd's control socket, shared by swctl, nsutil and
//! switchyard-cni. The protocol itself (requests, answers) is `switchyard::control`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use switchyard::control::{ControlError, ErrorCode, Reply, Request, DEFAULT_SOCKET, SOCKET_ENV};

/// How long a client waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Talking to switchd failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("switchd is not running at {path}: {source}; start it with `{}`, or point to it with --socket or {SOCKET_ENV}", start_command(path))]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no permission to use switchd's socket {path}: it is private to root, or to switchd's --socket-group; run this as root or as a member of that group"
    )]
    Forbidden { path: PathBuf },
    #[error("switchd at {path} did not answer: nothing within {secs} seconds; it may still be working, see its log")]
    Timeout { path: PathBuf, secs: u64 },
    #[error("lost the connection to switchd at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("switchd sent an answer this client does not understand: {0}; use a client of switchd's version (`swctl status` shows it)")]
    Protocol(#[source] serde_json::Error),
    /// switchd refused the request; the code says what kind of refusal, the message why.
    #[error("{0}")]
    Refused(ControlError),
}

/// How to start a switchd on `path`: `switchd`, with `--socket` unless it is the default.
fn start_command(path: &Path) -> String {
    if path == Path::new(DEFAULT_SOCKET) {
        "switchd".to_string()
    } else {
        format!("switchd --socket {}", path.display())
    }
}

impl ClientError {
    /// The code of a refusal, if switchd refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused(err) => Some(err.code),
            _ => None,
        }
    }
}

/// A blocking connection to switchd's control socket.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied => ClientError::Forbidden {
                path: path.to_path_buf(),
            },
            _ => ClientError::NotRunning {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let io_err = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        // switchd answers from its event loop; a minute covers the slowest attach.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of the process listening on the socket (switchd, unless something else
    /// holds its socket), as this process's pid namespace numbers it (`SO_PEERCRED`).
    /// `None` when the kernel cannot say, as for a listener in a pid namespace this
    /// process does not see.
    pub fn peer_pid(&self) -> Option<u32> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let credentials = getsockopt(&self.writer, PeerCredentials).ok()?;
        u32::try_from(credentials.pid())
            .ok()
            .filter(|pid| *pid != 0)
    }

    /// Sends `request` and decodes the answer as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let io_err = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(request).map_err(ClientError::Protocol)?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(io_err)?;
        let mut answer = String::new();
        let read = self
            .reader
            .read_line(&mut answer)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    ClientError::Timeout {
                        path: self.path.clone(),
                        secs: ANSWER_TIMEOUT.as_secs(),
                    }
                }
                _ => io_err(source),
            })?;
        if read == 0 {
            return Err(io_err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "switchd closed the connection",
            )));
        }
        match serde_json::from_str(&answer).map_err(ClientError::Protocol)? {
            Reply::Result(value) => Ok(value),
            Reply::Error(err) => Err(ClientError::Refused(err.into())),
        }
    }
}

impl Client {
    /// The connection, for a request whose answer line is followed by a stream (a
    /// capture): what was read past the answer is still in the reader. Reads no longer
    /// time out.
    pub fn into_stream(self) -> Result<BufReader<UnixStream>, ClientError> {
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_nothing_says_switchd_is_not_running() {
        let err = Client::connect(Path::new("/nonexistent/switchyard.sock"))
            .err()
            .expect("connect must fail");
        let text = err.to_string();
        assert!(
            text.starts_with("switchd is not running at /nonexistent/switchyard.sock: "),
            "{text}"
        );
        // The hint names the socket asked for.
        assert!(
            text.ends_with(
                "; start it with `switchd --socket /nonexistent/switchyard.sock`, or point to it with --socket or SWITCHYARD_SOCKET"
            ),
            "{text}"
        );
        assert_eq!(start_command(Path::new(DEFAULT_SOCKET)), "switchd");
    }

    #[test]
    fn the_peer_is_the_listening_process() {
        let dir = std::env::temp_dir().join(format!("swclient{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peer.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = Client::connect(&path).unwrap();
        let peer = client.peer_pid();
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(peer, Some(std::process::id()));
    }
}
