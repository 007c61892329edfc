//! A few reader connections beside the writer's, so queries run while a transaction commits
//! and several run at once (SQLite in WAL mode lets readers see the last committed state
//! without waiting for the writer).

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::Store;
use crate::error::Result;

pub(crate) struct Readers {
    stores: Vec<Mutex<Store>>,
    /// Where the next read starts looking for a free reader.
    next: AtomicUsize,
}

impl Readers {
    /// `stores` must not be empty.
    pub(crate) fn new(stores: Vec<Store>) -> Self {
        assert!(!stores.is_empty(), "a reader pool needs a reader");
        Readers { stores: stores.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) }
    }

    /// Runs `work` on a free reader (or waits for one), inside one read transaction.
    pub(crate) fn read<R>(&self, work: impl FnOnce(&mut Store) -> Result<R>) -> Result<R> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.stores.len();
        let mut store = (0..count)
            .find_map(|offset| self.stores[(start + offset) % count].try_lock())
            .unwrap_or_else(|| self.stores[start % count].lock());
        store.backend().begin_read()?;
        // Ends the read even if `work` panics, so the reader is clean for the next one.
        let reading = Reading(&mut store);
        work(reading.0)
    }
}

/// A read transaction begun on a reader, ended when this goes (even in a panic).
pub(crate) struct Reading<'a>(pub &'a mut Store);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.backend().end_read();
    }
}
