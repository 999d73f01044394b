//! The data plane's threads: thin drivers of the core's datapath.
//!
//! Every up TAP port has a thread of its own, and every VXLAN receiving socket one more,
//! plus one for the uplink TUN. Each sleeps in `poll(2)` on its descriptor and a stop
//! eventfd, so an idle switch uses no CPU, and several ports are served at once. A
//! thread reads into its [`Worker`]'s buffer, calls the worker with the time and where
//! the frame came from, and carries out what the worker transmits ([`Outputs`]): a
//! write to a TAP or a host port (small frames to a host port in batches of one
//! `sendmmsg`, see [`HostBatch`]), a VXLAN send, a write to the uplink. Everything in
//! between (the decision, tagging, the router, encapsulation, segmentation, merging) is
//! the core's `switchyard::datapath`, the same code the simulator drives.
//!
//! Nothing here takes a lock per frame: the datapath's read paths are lock-free, and the
//! table of TAPs is a published snapshot each thread refreshes with one atomic load.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use switchyard::datapath::{Datapath, Io, Transmit, Worker};
use switchyard::published::{Published, Snapshot};
use switchyard::wire::VNET_HDR_LEN;
use switchyard::{DropReason, PortId, Time};
use switchyard_os::packet::{is_link_down, PacketPort};
use switchyard_os::tap::Tap;

use crate::vtep::Vtep;

/// Frames a thread forwards between two looks at its stop signal.
const BATCH: usize = 64;

/// What a local port reads and writes: its TAP, or the packet socket of a host
/// interface (`switchyard_os::packet`). Both carry a vnet header before each frame, so
/// super-frames cross either whole.
#[derive(Clone)]
pub enum Device {
    Tap(Arc<Tap>),
    Host(Arc<PacketPort>),
}

impl Device {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Device::Tap(tap) => tap.read(buf),
            Device::Host(port) => port.read(buf),
        }
    }

    fn write(&self, wire: &[u8]) -> io::Result<usize> {
        match self {
            Device::Tap(tap) => tap.write(wire),
            Device::Host(port) => port.write(wire),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Device::Tap(tap) => tap.as_fd(),
            Device::Host(port) => port.as_fd(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Device::Tap(tap) => tap.name(),
            Device::Host(port) => port.name(),
        }
    }
}

/// Where the datapath's transmits go: the device of every up port, and the uplink.
#[derive(Clone, Default)]
pub struct Outputs {
    devices: HashMap<PortId, Device>,
    uplink: Option<Arc<Tap>>,
}

/// What the forwarding threads share.
pub struct Shared {
    pub dp: Arc<Datapath>,
    outputs: Published<Outputs>,
    /// The VTEP, once there is one: bound at start (`--vtep`, or the one the state
    /// remembers) or while running (`swctl vxlan enable`), and kept until switchd stops.
    pub vtep: OnceLock<Arc<Vtep>>,
    busy_poll: BusyPoll,
    started: Instant,
    /// Threads report a TAP that failed here; the control thread marks the port down.
    failures: crossbeam_channel::Sender<(PortId, String)>,
    wake_control: Arc<mio::Waker>,
    /// Where the embedded DNS sends queries upstream (and reads the replies), when on.
    dns_socket: Option<UdpSocket>,
    /// Wakes the DNS thread after a query went upstream: it has a new timer to keep.
    dns_wake: EventFd,
}

impl Shared {
    pub fn new(
        dp: Arc<Datapath>,
        busy_poll: BusyPoll,
        failures: crossbeam_channel::Sender<(PortId, String)>,
        wake_control: Arc<mio::Waker>,
        dns_socket: Option<UdpSocket>,
    ) -> Shared {
        Shared {
            dp,
            outputs: Published::new(Outputs::default()),
            vtep: OnceLock::new(),
            busy_poll,
            started: Instant::now(),
            failures,
            wake_control,
            dns_socket,
            dns_wake: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .expect("an eventfd"),
        }
    }

    /// Whether the embedded DNS is on (it has its upstream socket).
    pub fn dns_on(&self) -> bool {
        self.dns_socket.is_some()
    }

    pub fn now(&self) -> Time {
        Time::from_duration(self.started.elapsed())
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn set_uplink(&self, tun: Option<Arc<Tap>>) {
        self.outputs.update(|o| o.uplink = tun);
    }

    pub fn set_device(&self, id: PortId, device: Option<Device>) {
        self.outputs.update(|o| match device {
            Some(device) => {
                o.devices.insert(id, device);
            }
            None => {
                o.devices.remove(&id);
            }
        });
    }
}

/// One thread's side of the datapath's [`Io`]: its snapshot of the TAPs, and the VTEP.
/// The snapshot is let go whenever the thread sleeps, so a removed port's descriptor is
/// never kept open by a thread that has nothing to do.
struct Driver<'a> {
    outputs: Option<Snapshot<Outputs>>,
    shared: &'a Shared,
    /// Small frames for a host port, sent together with one `sendmmsg`.
    batch: HostBatch,
    /// Whether the frame being forwarded came right after another (the thread's input
    /// did not run dry in between): only then do small frames wait in the batch, so a
    /// lone frame (a request, an answer) goes at once.
    burst: bool,
}

/// Frames up to this size (a full-sized 1500-byte frame with a tag and the vnet header,
/// with room to spare) wait in a [`HostBatch`]; larger ones, super-frames above all, are
/// written at once (copying them into a batch would cost more than the call it saves).
const BATCHED_FRAME: usize = 2048;
/// Frames a [`HostBatch`] holds before it is sent.
const HOST_BATCH: usize = 32;

/// Small frames the datapath sent to one host port and the driver has not yet handed to
/// the kernel: they go with one `sendmmsg` when the thread's input runs dry, when the
/// batch is full, before the thread sleeps, and before any other frame to the same port
/// (so frames to a port keep their order). The buffers stay with the thread; the port's
/// socket is held only while frames wait.
#[derive(Default)]
struct HostBatch {
    /// The port the waiting frames are for, and its socket; `None` when none wait.
    to: Option<(PortId, Arc<PacketPort>)>,
    /// The wire images, end to end; `ends[i]` is where frame `i` ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl HostBatch {
    /// Queues `wire` for host port `port`, whose socket is `device`. Frames waiting for
    /// another port are sent first, and a full batch at once.
    fn queue(&mut self, shared: &Shared, port: PortId, device: &Arc<PacketPort>, wire: &[u8]) {
        if self.to.as_ref().is_some_and(|(to, _)| *to != port) {
            self.flush(shared);
        }
        self.to.get_or_insert_with(|| (port, Arc::clone(device)));
        self.bytes.extend_from_slice(wire);
        self.ends.push(self.bytes.len());
        if self.ends.len() >= HOST_BATCH {
            self.flush(shared);
        }
    }

    /// Sends what waits for `port` (a larger frame to it is about to go).
    fn flush_port(&mut self, shared: &Shared, port: PortId) {
        if self.to.as_ref().is_some_and(|(to, _)| *to == port) {
            self.flush(shared);
        }
    }

    /// Hands every waiting frame to the kernel. A frame it refuses (its queue full, the
    /// link down) is the port's drop, not a transmit, and the frames after it still go.
    fn flush(&mut self, shared: &Shared) {
        let Some((port, device)) = self.to.take() else {
            return;
        };
        let mut wires: [&[u8]; HOST_BATCH] = [&[]; HOST_BATCH];
        let mut start = 0;
        for (wire, &end) in wires.iter_mut().zip(&self.ends) {
            *wire = &self.bytes[start..end];
            start = end;
        }
        let wires = &wires[..self.ends.len()];
        let mut next = 0;
        while next < wires.len() {
            match device.write_batch(&wires[next..]) {
                Ok(sent) if sent > 0 => next += sent,
                _ => {
                    let bytes = wires[next].len().saturating_sub(VNET_HDR_LEN);
                    shared.dp.switch().record_tx_refused(port, bytes);
                    next += 1;
                }
            }
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

impl<'a> Driver<'a> {
    fn new(shared: &'a Shared) -> Driver<'a> {
        Driver {
            outputs: None,
            shared,
            batch: HostBatch::default(),
            burst: false,
        }
    }

    /// Sends the frames waiting for a host port, if any.
    fn flush(&mut self) {
        self.batch.flush(self.shared);
    }

    /// The thread's input ran dry: sends what waits, then says whether to keep trying
    /// to read (see [`Reading::keep_trying`]).
    fn dry(&mut self, reading: &mut Reading) -> bool {
        self.flush();
        reading.keep_trying()
    }

    /// Catches up with added and removed ports (one atomic load when there are none).
    fn refresh(&mut self) {
        match &mut self.outputs {
            Some(outputs) => outputs.refresh(&self.shared.outputs),
            None => self.outputs = Some(self.shared.outputs.snapshot()),
        }
    }

    fn outputs(&mut self) -> &Outputs {
        self.outputs
            .get_or_insert_with(|| self.shared.outputs.snapshot())
            .get()
    }

    /// Sleeps until `fd` is readable (true) or `stop` is signalled (false), holding no
    /// snapshot meanwhile.
    fn sleep(&mut self, fd: BorrowedFd<'_>, stop: &EventFd) -> bool {
        self.flush();
        self.outputs = None;
        wait_readable(fd, stop)
    }
}

impl Io for Driver<'_> {
    fn transmit(&mut self, transmit: Transmit<'_>) -> Result<(), DropReason> {
        match transmit {
            Transmit::Port { port, wire } => {
                let shared = self.shared;
                let device = self
                    .outputs
                    .get_or_insert_with(|| shared.outputs.snapshot())
                    .get()
                    .devices
                    .get(&port)
                    .ok_or(DropReason::TxError)?;
                if let Device::Host(host) = device {
                    if self.burst && wire.len() <= BATCHED_FRAME {
                        self.batch.queue(shared, port, host, wire);
                        return Ok(());
                    }
                    self.batch.flush_port(shared, port);
                }
                device
                    .write(wire)
                    .map(drop)
                    .map_err(|_| DropReason::TxError)
            }
            Transmit::Vxlan {
                remote,
                flow,
                datagrams,
                stride,
            } => {
                let vtep = self.shared.vtep.get().ok_or(DropReason::TxError)?;
                vtep.send(remote, flow, datagrams, stride).map_err(|err| {
                    tracing::debug!(%remote, "VXLAN send failed: {err}");
                    DropReason::TxError
                })
            }
            Transmit::Uplink { wire } => {
                let tun = self.outputs().uplink.as_ref().ok_or(DropReason::NoEgress)?;
                tun.write(wire).map(drop).map_err(|_| DropReason::TxError)
            }
            Transmit::Dns { upstream, message } => {
                let socket = self.shared.dns_socket.as_ref().ok_or(DropReason::TxError)?;
                socket.send_to(message, upstream).map(drop).map_err(|err| {
                    tracing::debug!(%upstream, "DNS query upstream failed: {err}");
                    DropReason::TxError
                })
            }
            Transmit::DnsTimers => {
                let _ = self.shared.dns_wake.write(1);
                Ok(())
            }
        }
    }
}

/// A forwarding thread, stopped and joined when dropped.
pub struct Thread {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spawn(name: String, work: impl FnOnce(&EventFd) + Send + 'static) -> io::Result<Thread> {
    let stop = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || work(&thread_stop))?;
    Ok(Thread {
        stop,
        thread: Some(thread),
    })
}

/// How long a forwarding thread keeps trying to read after its descriptor ran dry, before
/// it goes back to sleep in `poll(2)`: the userspace counterpart of the kernel's
/// `net.core.busy_poll`. Under load the next frame is usually microseconds away, and
/// catching it awake saves the sleep and the wake-up (an inter-processor interrupt, and a
/// halted vCPU to resume, both costly in a VM). Between tries the thread yields, so a
/// container that has work on that CPU runs first. A thread polls only right after it
/// forwarded something, so an idle switch still sleeps and uses no CPU.
#[derive(Clone, Copy, Debug)]
pub struct BusyPoll(pub Duration);

/// One wake-up's reading: counts frames against the batch and decides, when the
/// descriptor is dry, whether to keep trying.
struct Reading {
    budget: usize,
    /// Frames read since the descriptor was last found dry (or the thread woke).
    streak: usize,
    busy_poll: Duration,
    dry_since: Option<Instant>,
}

impl Reading {
    fn new(busy_poll: BusyPoll) -> Reading {
        Reading {
            budget: BATCH,
            streak: 0,
            busy_poll: busy_poll.0,
            dry_since: None,
        }
    }

    /// Whether to read again: the batch is not used up.
    fn more(&self) -> bool {
        self.budget > 0
    }

    /// A frame was read: returns whether it came right after another (see
    /// [`Driver::burst`]).
    fn got_one(&mut self) -> bool {
        self.budget = self.budget.saturating_sub(1);
        self.dry_since = None;
        self.streak += 1;
        self.streak > 1
    }

    /// Nothing to read: true to try again (still within the busy-poll time), false to
    /// go back to sleep.
    fn keep_trying(&mut self) -> bool {
        self.streak = 0;
        let since = *self.dry_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.busy_poll {
            // Let anything else runnable on this CPU go first (a container answering
            // is worth more than the next frame a moment earlier).
            std::thread::yield_now();
            true
        } else {
            false
        }
    }
}

/// Sleeps until `fd` is readable (true) or `stop` is signalled (false).
fn wait_readable(fd: BorrowedFd<'_>, stop: &EventFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                let stopped = fds[1].revents().is_some_and(|r| !r.is_empty());
                if stopped {
                    return false;
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return true;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Starts the thread that forwards what the container behind port `id` sends.
pub fn spawn_port(shared: Arc<Shared>, id: PortId, device: Device) -> io::Result<Thread> {
    spawn(format!("port{id}"), move |stop| {
        let mut worker = Worker::new(Arc::clone(&shared.dp));
        let mut driver = Driver::new(&shared);
        while driver.sleep(device.fd(), stop) {
            let mut reading = Reading::new(shared.busy_poll);
            while reading.more() {
                driver.refresh();
                let len = match device.read(worker.frame_buffer(&mut driver)) {
                    Ok(len) => {
                        driver.burst = reading.got_one();
                        len
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        if driver.dry(&mut reading) {
                            continue;
                        }
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    // A host interface that went down says so once; the link watcher
                    // tells the controller, which marks the port down until it is up.
                    Err(err) if matches!(device, Device::Host(_)) && is_link_down(&err) => {
                        break;
                    }
                    Err(err) => {
                        shared.dp.switch().set_port_up(id, false).ok();
                        let problem = match device {
                            Device::Tap(_) => format!(
                                "TAP read failed: {err}; the interface was probably deleted inside the container: remove the port with `swctl port del {id}` and attach again"
                            ),
                            Device::Host(_) => format!(
                                "reading {} failed: {err}; remove the port with `swctl port del {id}` and add it again",
                                device.name()
                            ),
                        };
                        let _ = shared.failures.send((id, problem));
                        let _ = shared.wake_control.wake();
                        return;
                    }
                };
                worker.handle_port(shared.now(), id, len, &mut driver);
            }
        }
    })
}

/// Starts the threads that read `vtep`'s receiving sockets, one each (they send through
/// the VTEP in `shared`, once it is there).
pub fn spawn_vxlan(shared: &Arc<Shared>, vtep: &Arc<Vtep>) -> io::Result<Vec<Thread>> {
    (0..vtep.receivers())
        .map(|index| spawn_vxlan_receiver(Arc::clone(shared), Arc::clone(vtep), index))
        .collect()
}

/// Starts the thread that reads the VTEP's receiving socket number `index`.
fn spawn_vxlan_receiver(shared: Arc<Shared>, vtep: Arc<Vtep>, index: usize) -> io::Result<Thread> {
    spawn(format!("vxlan{index}"), move |stop| {
        let mut worker = Worker::new(Arc::clone(&shared.dp));
        let mut driver = Driver::new(&shared);
        while driver.sleep(vtep.rx_fd(index), stop) {
            let mut reading = Reading::new(shared.busy_poll);
            while reading.more() {
                driver.refresh();
                match vtep.recv_batch(index, worker.datagram_buffer()) {
                    Ok(Some(batch)) => {
                        driver.burst = reading.got_one();
                        let from: SocketAddr = batch.from;
                        worker.handle_datagrams(
                            shared.now(),
                            from,
                            batch.len,
                            batch.segment,
                            &mut driver,
                        );
                    }
                    Ok(None) => {
                        // Nothing more now: a held frame goes without waiting.
                        worker.flush(&mut driver);
                        if !driver.dry(&mut reading) {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!("reading the VXLAN socket failed: {err}");
                        break;
                    }
                }
            }
            worker.flush(&mut driver);
        }
    })
}

/// Starts the thread of the embedded DNS: it reads the upstream socket and relays each
/// reply, and sends the retries and SERVFAILs the forwarder's timers ask for. It sleeps
/// in `poll(2)` until a datagram comes or the next timer is due.
pub fn spawn_dns(shared: Arc<Shared>) -> io::Result<Thread> {
    spawn("dns".to_string(), move |stop| {
        let Some(socket) = shared.dns_socket.as_ref() else {
            return;
        };
        let mut worker = Worker::new(Arc::clone(&shared.dp));
        let mut driver = Driver::new(&shared);
        let mut buffer = vec![0u8; 65535];
        let mut next: Option<Time> = None;
        loop {
            driver.outputs = None;
            let timeout = match next {
                Some(at) => {
                    // `since` is zero when `at` is past.
                    let wait = at.since(shared.now()).as_millis().min(10_000) as u16;
                    PollTimeout::from(wait + 1)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = [
                PollFd::new(socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
                PollFd::new(shared.dns_wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => {
                    tracing::warn!("the DNS thread cannot poll: {err}");
                    return;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
            let _ = shared.dns_wake.read();
            driver.refresh();
            loop {
                match socket.recv_from(&mut buffer) {
                    Ok((len, from)) => {
                        worker.handle_dns_reply(shared.now(), from, &buffer[..len], &mut driver)
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    // WouldBlock, or an ICMP error for an earlier send: read on later.
                    Err(_) => break,
                }
            }
            next = worker.poll_dns(shared.now(), &mut driver);
        }
    })
}

/// Starts the thread that reads what the host routes into the uplink TUN: IP packets
/// the router turns into frames on a network's VLAN.
pub fn spawn_uplink(shared: Arc<Shared>, tun: Arc<Tap>) -> io::Result<Thread> {
    spawn("uplink".to_string(), move |stop| {
        let mut worker = Worker::new(Arc::clone(&shared.dp));
        let mut driver = Driver::new(&shared);
        while driver.sleep(tun.as_fd(), stop) {
            let mut reading = Reading::new(shared.busy_poll);
            while reading.more() {
                driver.refresh();
                let len = match tun.read(worker.frame_buffer(&mut driver)) {
                    Ok(len) => {
                        driver.burst = reading.got_one();
                        len
                    }
                    Err(err)
                        if err.kind() == io::ErrorKind::WouldBlock && driver.dry(&mut reading) =>
                    {
                        continue
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        if err.kind() != io::ErrorKind::WouldBlock {
                            tracing::warn!("reading the uplink failed: {err}");
                        }
                        break;
                    }
                };
                worker.handle_uplink(shared.now(), len, &mut driver);
            }
        }
    })
}
