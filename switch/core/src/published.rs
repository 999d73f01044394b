//! Read-mostly state shared between one writer and many forwarding threads.
//!
//! [`Published`] holds the current version of a value behind an `Arc`. A writer makes a
//! new version (a clone, changed) and publishes it; readers keep a [`Snapshot`] of the
//! version they last saw and check, with one atomic load of a generation counter that
//! only changes on publish, whether a newer one exists. So the hot path reads shared
//! memory that is never written while nothing changes: no lock, no atomic
//! read-modify-write, no cache line bouncing between cores.
//!
//! # Contract
//!
//! * A reader sees whole versions only, never a half-made change.
//! * After [`Published::update`] returns, every [`Snapshot::refresh`] started later sees
//!   the new version (or a newer one).
//! * Updates are serialized by an internal lock; the closure runs with it held, so it
//!   must not publish again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The current version of a `T`. See the module documentation.
pub struct Published<T> {
    current: RwLock<Arc<T>>,
    generation: AtomicU64,
}

impl<T: Clone> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published {
            current: RwLock::new(Arc::new(value)),
            generation: AtomicU64::new(0),
        }
    }

    /// The current version.
    pub fn load(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A snapshot of the current version, to [`Snapshot::refresh`] later.
    pub fn snapshot(&self) -> Snapshot<T> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            generation: self.generation.load(Ordering::Acquire),
            value: Arc::clone(&current),
        }
    }

    /// Publishes a changed copy of the current version, if `change` succeeds; on error
    /// nothing is published.
    pub fn try_update<R, E>(&self, change: impl FnOnce(&mut T) -> Result<R, E>) -> Result<R, E> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut next = T::clone(&current);
        let result = change(&mut next)?;
        *current = Arc::new(next);
        // Under the write lock: a reader holding the read lock sees a generation that
        // matches the version it clones.
        self.generation.fetch_add(1, Ordering::Release);
        Ok(result)
    }

    /// Publishes a changed copy of the current version.
    pub fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        let result: Result<R, std::convert::Infallible> = self.try_update(|t| Ok(change(t)));
        match result {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One reader's copy of a [`Published`] value.
pub struct Snapshot<T> {
    generation: u64,
    value: Arc<T>,
}

impl<T: Clone> Snapshot<T> {
    /// Catches up with the latest version; one atomic load when there is none.
    #[inline]
    pub fn refresh(&mut self, from: &Published<T>) {
        if from.generation() != self.generation {
            *self = from.snapshot();
        }
    }

    #[inline]
    pub fn get(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_see_updates_only_when_refreshed() {
        let shared = Published::new(vec![1]);
        let mut snapshot = shared.snapshot();
        shared.update(|v| v.push(2));
        assert_eq!(snapshot.get(), &vec![1]);
        snapshot.refresh(&shared);
        assert_eq!(snapshot.get(), &vec![1, 2]);
        let failed: Result<(), &str> = shared.try_update(|v| {
            v.push(3);
            Err("no")
        });
        assert!(failed.is_err());
        snapshot.refresh(&shared);
        assert_eq!(
            snapshot.get(),
            &vec![1, 2],
            "a failed update publishes nothing"
        );
        assert_eq!(*shared.load(), vec![1, 2]);
    }
}
