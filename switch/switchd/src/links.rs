//! Watching host ports' interfaces: a thread of its own reads rtnetlink link events of
//! switchd's namespace and of every namespace a host port lives in, and hands them to
//! the control thread, which tells the controller (`Controller::link_changed`): an
//! interface that goes down or away marks its port down, and one that comes back is
//! opened again.
//!
//! The control thread says which namespaces to watch ([`LinkWatch::watch`]); the
//! thread opens a [`LinkWatcher`] in each (once) and sleeps in `poll(2)` on all of them
//! and a command eventfd. Events are states, not transitions (see
//! `switchyard_os::linkwatch`): the controller takes each idempotently.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use switchyard_os::linkwatch::{LinkEvent, LinkWatcher};
use switchyard_os::netns::Netns;

/// A link event and the namespace it happened in (`None`: switchd's own).
pub type NamespacedEvent = (Option<PathBuf>, LinkEvent);

enum Command {
    Watch(Option<PathBuf>),
    Stop,
}

/// The control thread's end: commands in, events out.
pub struct LinkWatch {
    commands: Sender<Command>,
    doorbell: Arc<EventFd>,
    pub events: Receiver<NamespacedEvent>,
    thread: Option<JoinHandle<()>>,
}

impl LinkWatch {
    /// Starts the thread, watching switchd's own namespace; `wake` is rung when events
    /// arrive.
    pub fn start(wake: Arc<mio::Waker>) -> std::io::Result<LinkWatch> {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (event_tx, events) = crossbeam_channel::unbounded();
        let doorbell = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let bell = Arc::clone(&doorbell);
        let thread = std::thread::Builder::new()
            .name("links".into())
            .spawn(move || run(&command_rx, &bell, &event_tx, &wake))?;
        let watch = LinkWatch {
            commands,
            doorbell,
            events,
            thread: Some(thread),
        };
        watch.watch(None);
        Ok(watch)
    }

    /// Watches the namespace at `netns` too (nothing if it is watched already).
    pub fn watch(&self, netns: Option<PathBuf>) {
        let _ = self.commands.send(Command::Watch(netns));
        let _ = self.doorbell.write(1);
    }
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.doorbell.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    commands: &Receiver<Command>,
    doorbell: &EventFd,
    events: &Sender<NamespacedEvent>,
    wake: &mio::Waker,
) {
    let mut watchers: BTreeMap<Option<PathBuf>, LinkWatcher> = BTreeMap::new();
    loop {
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Stop => return,
                Command::Watch(netns) if !watchers.contains_key(&netns) => {
                    let opened = match &netns {
                        None => LinkWatcher::open().map_err(|err| err.to_string()),
                        Some(path) => Netns::open_path(path)
                            .map_err(|err| err.to_string())
                            .and_then(|ns| LinkWatcher::open_in(&ns).map_err(|e| e.to_string())),
                    };
                    match opened {
                        Ok(watcher) => {
                            watchers.insert(netns, watcher);
                        }
                        Err(err) => tracing::warn!(
                            netns = ?netns,
                            "cannot watch the interfaces of the namespace: {err}; its host ports will not follow their links"
                        ),
                    }
                }
                Command::Watch(_) => {}
            }
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = watchers
                .values()
                .map(|w| PollFd::new(w.as_fd(), PollFlags::POLLIN))
                .collect();
            fds.push(PollFd::new(doorbell.as_fd(), PollFlags::POLLIN));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(err) => {
                    tracing::warn!("watching interfaces failed: {err}; host ports no longer follow their links");
                    return;
                }
            }
            fds.iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        if ready.last().copied().unwrap_or(false) {
            let _ = doorbell.read();
        }
        let mut any = false;
        for ((netns, watcher), ready) in watchers.iter_mut().zip(&ready) {
            if !ready {
                continue;
            }
            for event in watcher.events() {
                any = true;
                if events.send((netns.clone(), event)).is_err() {
                    return;
                }
            }
        }
        if any {
            let _ = wake.wake();
        }
    }
}
