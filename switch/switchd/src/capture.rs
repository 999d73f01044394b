//! Live captures (`swctl capture`): a thread per capture streams the port's frames to
//! the client's control connection as pcapng.
//!
//! The control thread answers the request and hands the connection over; from then on
//! the connection is the capture's. Its thread waits on the tap's queue (see
//! `switchyard::capture` for what forwarding does, which is never to wait), writes each
//! frame as a packet block with its direction and wall-clock time, and ends when the
//! count is reached, the client goes away, the port is removed, or switchd stops: then
//! it removes the tap and, if the client is still there, writes the statistics block
//! (frames captured, frames lost for want of room).

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use switchyard::capture::{pcapng, CaptureReader, CaptureTap, Directions, DEFAULT_BUDGET};
use switchyard::control::{CaptureStarted, ControlError, ErrorCode, Reply};
use switchyard::datapath::Datapath;
use switchyard::PortId;

/// Captures running at once, at most: each is a thread and a queue of up to
/// [`DEFAULT_BUDGET`] bytes.
pub const MAX_CAPTURES: usize = 16;

/// How often a capture with nothing to write checks that its client and port are there.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// How long a write to the client may wait before the capture gives up on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A capture request: the port, which directions, how many frames.
pub struct CaptureRequest {
    pub port: String,
    pub directions: Directions,
    pub count: Option<u64>,
}

/// The running captures, shared with their threads (which count themselves out).
#[derive(Default)]
pub struct Captures {
    running: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Each capture's thread, and its connection (to cut a write that hangs).
    threads: Vec<(JoinHandle<()>, Option<UnixStream>)>,
}

/// A capture whose tap is in the datapath, not yet streaming.
pub struct Tapped {
    id: PortId,
    name: String,
    tap: Arc<CaptureTap>,
    reader: CaptureReader,
    count: Option<u64>,
}

impl Captures {
    /// Puts a tap on port `id` (called `name`) for `request`: the step that may be
    /// refused (too many captures, the port gone), taken while the connection is still
    /// the control thread's, so that a refusal is an answer like any other.
    pub fn tap(
        &mut self,
        dp: &Datapath,
        (id, name): (PortId, String),
        request: &CaptureRequest,
    ) -> Result<Tapped, ControlError> {
        self.threads.retain(|(t, _)| !t.is_finished());
        if self.running.load(Ordering::Acquire) >= MAX_CAPTURES {
            return Err(ControlError::new(
                ErrorCode::Conflict,
                format!("{MAX_CAPTURES} captures are running already; stop one first"),
            ));
        }
        let (tap, reader) = CaptureTap::new(request.directions, DEFAULT_BUDGET);
        if dp.switch().add_capture(id, Arc::clone(&tap)).is_err() {
            return Err(ControlError::new(
                ErrorCode::NoSuchPort,
                format!("port {name} went away; try again"),
            ));
        }
        Ok(Tapped {
            id,
            name,
            tap,
            reader,
            count: request.count,
        })
    }

    /// Streams `tapped` onto `stream`, whose unsent answers are `pending`, from a thread
    /// of its own. Never blocks the caller: if the thread cannot start, the tap is
    /// removed and the refusal written only as far as the socket takes it at once.
    pub fn start(
        &mut self,
        dp: &Arc<Datapath>,
        started: Instant,
        tapped: Tapped,
        stream: UnixStream,
        pending: Vec<u8>,
    ) {
        let Tapped {
            id,
            name,
            tap,
            reader,
            count,
        } = tapped;
        // A client that takes nothing for this long ends its capture.
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let handle = stream.try_clone().ok();
        let refusal = stream.try_clone().ok();
        let job = Job {
            dp: Arc::clone(dp),
            id,
            name: name.clone(),
            tap: Arc::clone(&tap),
            reader,
            count,
            stream,
            base_unix_ns: unix_ns(SystemTime::now())
                .saturating_sub(started.elapsed().as_nanos() as u64),
            running: Arc::clone(&self.running),
            stop: Arc::clone(&self.stop),
        };
        self.running.fetch_add(1, Ordering::AcqRel);
        let thread = std::thread::Builder::new()
            .name(format!("capture-{id}"))
            .spawn(move || job.run(pending));
        match thread {
            Ok(thread) => self.threads.push((thread, handle)),
            Err(err) => {
                // The job (and its count in `running`) went with the closure.
                self.running.fetch_sub(1, Ordering::AcqRel);
                dp.switch().remove_capture(id, &tap);
                tracing::warn!(port = %name, "cannot start a capture thread: {err}");
                if let Some(mut stream) = refusal {
                    let message = format!(
                        "cannot start a capture thread: {err}; check switchd's limits (ulimit -u)"
                    );
                    let mut line = crate::ctl::error_line(ErrorCode::SystemError, &message);
                    line.push('\n');
                    let _ = stream
                        .set_nonblocking(true)
                        .and_then(|()| stream.write(line.as_bytes()));
                }
            }
        }
    }
}

impl Drop for Captures {
    /// Ends every capture (each writes its statistics) before switchd goes.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Each notices within CHECK_EVERY, unless a write to a client that reads
        // nothing holds it: such connections are cut after a grace period.
        let deadline = Instant::now() + 2 * CHECK_EVERY;
        while Instant::now() < deadline && self.threads.iter().any(|(t, _)| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (thread, stream) in self.threads.drain(..) {
            if let (false, Some(stream)) = (thread.is_finished(), stream) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            let _ = thread.join();
        }
    }
}

fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Job {
    dp: Arc<Datapath>,
    id: PortId,
    name: String,
    tap: Arc<CaptureTap>,
    reader: CaptureReader,
    count: Option<u64>,
    stream: UnixStream,
    /// The wall-clock time of the datapath's time zero, in ns since the epoch.
    base_unix_ns: u64,
    running: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// Why a capture ended.
#[derive(Debug)]
enum End {
    Count,
    ClientGone,
    PortGone,
    Stopping,
    WriteFailed(io::Error),
}

impl End {
    /// For the statistics block's comment, which swctl prints.
    fn describe(&self) -> &'static str {
        match self {
            End::Count => "the count was reached",
            End::ClientGone => "the client went away",
            End::PortGone => "the port was removed",
            End::Stopping => "switchd stopped",
            End::WriteFailed(_) => "the client took nothing for too long",
        }
    }
}

impl Job {
    fn run(mut self, pending: Vec<u8>) {
        tracing::info!(port = %self.name, count = ?self.count, "capture started");
        let (end, sent) = self.stream_frames(pending);
        self.dp.switch().remove_capture(self.id, &self.tap);
        let (taken, lost) = (self.tap.taken(), self.tap.lost());
        if let End::WriteFailed(err) = &end {
            tracing::info!(port = %self.name, error = %err, "capture: the client takes nothing");
        }
        if !matches!(end, End::ClientGone | End::WriteFailed(_)) {
            // What the capture saw: what it queued (written or not, when the count was
            // reached first) and what found the queue full.
            let stats = pcapng::interface_statistics(
                unix_ns(SystemTime::now()),
                taken + lost,
                lost,
                end.describe(),
            );
            let _ = self.stream.write_all(&stats);
        }
        // Logged before the client sees the end, so that the log has it when it does.
        tracing::info!(
            port = %self.name,
            frames = sent,
            queued = taken,
            lost,
            end = end.describe(),
            "capture ended"
        );
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Writes the answer, the file's header and the frames; returns why it stopped and
    /// how many frames it wrote.
    fn stream_frames(&mut self, mut head: Vec<u8>) -> (End, u64) {
        let answer = Reply::Result(CaptureStarted {
            port: self.id,
            name: self.name.clone(),
            budget: self.tap.budget(),
        });
        let line = serde_json::to_string(&answer).unwrap_or_default();
        head.extend_from_slice(line.as_bytes());
        head.push(b'\n');
        head.extend_from_slice(&pcapng::section_header(concat!(
            "switchd ",
            env!("CARGO_PKG_VERSION")
        )));
        head.extend_from_slice(&pcapng::interface_description(&self.name));
        if let Err(err) = self
            .stream
            .set_nonblocking(false)
            .and_then(|()| self.stream.write_all(&head))
        {
            return (End::WriteFailed(err), 0);
        }
        let mut sent = 0u64;
        loop {
            if self.count.is_some_and(|count| sent >= count) {
                return (End::Count, sent);
            }
            if self.stop.load(Ordering::Acquire) {
                return (End::Stopping, sent);
            }
            match self.reader.recv_timeout(CHECK_EVERY) {
                Some(frame) => {
                    let at = self
                        .base_unix_ns
                        .saturating_add(frame.at.since(switchyard::Time::ZERO).as_nanos() as u64);
                    let block = pcapng::enhanced_packet(at, frame.direction, &frame.frame);
                    if let Err(err) = self.stream.write_all(&block) {
                        let end = match err.kind() {
                            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                                End::ClientGone
                            }
                            _ => End::WriteFailed(err),
                        };
                        return (end, sent);
                    }
                    sent += 1;
                }
                None => {
                    if self.client_gone() {
                        return (End::ClientGone, sent);
                    }
                    if self.dp.switch().port_kind(self.id).is_none() {
                        return (End::PortGone, sent);
                    }
                }
            }
        }
    }

    /// Whether the client closed its end (or sent something, which it must not).
    fn client_gone(&self) -> bool {
        let mut fds = [PollFd::new(
            self.stream.as_fd(),
            PollFlags::POLLIN | PollFlags::POLLHUP,
        )];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => false,
            Ok(_) => true,
            Err(_) => false,
        }
    }
}
