//! Handing commits to live queries off the committing thread.
//!
//! A commit records what it touched in one pending batch and returns; the live thread takes
//! the whole batch and updates the live queries (views, channels, sync feeds) from a reader
//! snapshot. The batch is taken while the store is locked, so the state read for it is exactly
//! the state its commits left: no later commit's data, none missing. Commits that land while
//! the live thread works fall into the next batch, so under load one update covers many
//! commits (an entity touched twice keeps the first commit's `before`), and a writer never
//! waits for the fan-out to a thousand connections.
//!
//! Whoever needs the live queries caught up with every commit so far (a new subscription, a
//! schema change, [`super::Database::flush_subscriptions`]) takes the batch itself, under the
//! lock the live thread updates under: updates run one at a time and in commit order.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::Shared;
use super::transaction::Touched;
use crate::live::Change;
use crate::schema::Schema;
use crate::store::{Backend, Reading, Store, Timestamp};

pub(super) struct Fanout {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while live queries update (by the live thread, or a caller catching up), with the
    /// reader connection they update through (a SQLite file; `None` reads through the writer).
    updating: Mutex<Option<Store>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What commits left for live queries since the last update took its batch.
#[derive(Default)]
struct Pending {
    batch: Batch,
    /// A batch was taken and its update has not finished (the checkpoint must wait for it).
    busy: bool,
    shutdown: bool,
    /// Called once the update under way (or the batch waiting) is done.
    waiters: Vec<Arc<dyn Fn() + Send + Sync>>,
}

#[derive(Default)]
struct Batch {
    touched: Vec<Touched>,
    /// Where each entity is in `touched`, so a later commit's write merges into the first.
    positions: HashMap<(String, String), usize>,
    /// The clock after the batch's last commit.
    checkpoint: Option<Timestamp>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.checkpoint.is_none()
    }

    fn add(&mut self, touched: Vec<Touched>, checkpoint: Timestamp) {
        if self.touched.is_empty() {
            // A transaction lists an entity once: the batch's first commit needs no lookups
            // (an initial sync is one commit of 100,000 entities).
            self.touched = touched;
            self.checkpoint = Some(checkpoint);
            return;
        }
        if self.positions.is_empty() {
            let first = self.touched.iter().enumerate();
            self.positions = first.map(|(at, t)| ((t.collection.clone(), t.id.clone()), at)).collect();
        }
        for t in touched {
            let key = (t.collection.clone(), t.id.clone());
            // An entity an earlier commit of the batch touched keeps that commit's `before`.
            self.positions.entry(key).or_insert_with(|| {
                self.touched.push(t);
                self.touched.len() - 1
            });
        }
        self.checkpoint = Some(checkpoint);
    }
}

impl Fanout {
    pub(super) fn new(live_reader: Option<Store>) -> Arc<Self> {
        Arc::new(Fanout {
            pending: Mutex::default(),
            wake: Condvar::new(),
            updating: Mutex::new(live_reader),
            thread: Mutex::new(None),
        })
    }

    /// Records a commit for the live queries. The caller holds the store lock (so commits
    /// arrive in order) and has committed `touched`; `checkpoint` is the clock after it.
    pub(super) fn committed(self: &Arc<Self>, shared: &Arc<Shared>, touched: Vec<Touched>, checkpoint: Timestamp) {
        let mut pending = self.pending.lock();
        if touched.is_empty() && pending.batch.is_empty() && !pending.busy {
            // Nothing to update and no update under way: the checkpoint moves now.
            shared.advance_checkpoint(checkpoint);
            return;
        }
        pending.batch.add(touched, checkpoint);
        drop(pending);
        let mut thread = self.thread.lock();
        if thread.is_none() {
            *thread = Some(spawn(self.clone(), Arc::downgrade(shared)));
        }
        self.wake.notify_one();
    }

    /// Brings the live queries up to date with every commit so far, then runs `work` on a
    /// backend that reads exactly that state before any later commit reaches them (a new
    /// subscription's first result). Holds the store lock only to take the batch, or, without
    /// a reader connection, for the whole update.
    pub(super) fn catch_up<R>(&self, shared: &Shared, work: impl FnOnce(&dyn Backend, Option<&Schema>) -> R) -> R {
        let mut updating = self.updating.lock();
        let mut store = shared.store.lock();
        let batch = self.take();
        let schema = shared.schema.read().clone();
        if let Some(reader) = updating.as_mut() {
            match reader.backend().begin_read() {
                Ok(()) => {
                    drop(store);
                    let reading = Reading(reader);
                    self.update(shared, reading.0.backend(), schema.as_deref(), batch);
                    return work(reading.0.backend(), schema.as_deref());
                }
                // The commits are durable; this update reads through the writer instead.
                Err(e) => tracing::warn!(error = %e, "the live-query reader failed; reading through the writer"),
            }
        }
        self.update(shared, store.backend(), schema.as_deref(), batch);
        work(store.backend(), schema.as_deref())
    }

    /// Brings the live queries up to date through the writer's connection and keeps them
    /// still: the caller changes the schema while it holds the two locks returned (the update
    /// lock, then the store).
    pub(super) fn hold_caught_up<'a>(
        &'a self,
        shared: &'a Shared,
    ) -> (MutexGuard<'a, Option<Store>>, MutexGuard<'a, Store>) {
        let updating = self.updating.lock();
        let mut store = shared.store.lock();
        let schema = shared.schema.read().clone();
        let batch = self.take();
        self.update(shared, store.backend(), schema.as_deref(), batch);
        (updating, store)
    }

    /// Whether every commit so far has reached the live queries (the caller holds the store
    /// lock, so none is being added); if not, `wake` is called once they have.
    pub(super) fn idle_or_wake_later(&self, wake: Arc<dyn Fn() + Send + Sync>) -> bool {
        let mut pending = self.pending.lock();
        let idle = pending.batch.is_empty() && !pending.busy;
        if !idle {
            pending.waiters.push(wake);
        }
        idle
    }

    /// Takes the pending batch; the caller holds the update lock and the store lock.
    fn take(&self) -> Batch {
        let mut pending = self.pending.lock();
        let batch = std::mem::take(&mut pending.batch);
        pending.busy = !batch.is_empty();
        batch
    }

    /// Hands a batch, as `backend` reads the state it left, to the live queries, then moves
    /// the checkpoint past it.
    fn update(&self, shared: &Shared, backend: &dyn Backend, schema: Option<&Schema>, batch: Batch) {
        let Some(checkpoint) = batch.checkpoint else { return };
        if !batch.touched.is_empty() {
            let mut changes = Vec::with_capacity(batch.touched.len());
            for t in batch.touched {
                // The commits are durable: a failed read must not report them as failed, so an
                // unreadable entity reaches the live queries as deleted.
                let after = backend.read_doc(&t.collection, &t.id).unwrap_or(None);
                changes.push(Change { collection: t.collection, id: t.id, before: t.before, after });
            }
            shared.live.after_commit(backend, schema, changes, &checkpoint);
        }
        let mut pending = self.pending.lock();
        shared.advance_checkpoint(checkpoint);
        pending.busy = false;
        let waiters = std::mem::take(&mut pending.waiters);
        drop(pending);
        for wake in waiters {
            wake();
        }
    }

    /// Updates what is still pending (the database is going away), then stops the thread.
    pub(super) fn finish(&self, shared: &Shared) {
        self.catch_up(shared, |_, _| ());
        self.pending.lock().shutdown = true;
        self.wake.notify_one();
        let thread = self.thread.lock().take();
        // The last handle may have gone on the live thread itself (it holds one while updating).
        if let Some(thread) = thread.filter(|t| t.thread().id() != std::thread::current().id()) {
            let _ = thread.join();
        }
    }
}

/// The live thread: takes each batch as it comes. It holds the database only while updating,
/// so dropping the last handle elsewhere ends it.
fn spawn(fanout: Arc<Fanout>, shared: Weak<Shared>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("triplite-live".into())
        .spawn(move || {
            loop {
                {
                    let mut pending = fanout.pending.lock();
                    while pending.batch.is_empty() && !pending.shutdown {
                        fanout.wake.wait(&mut pending);
                    }
                    if pending.shutdown {
                        return;
                    }
                }
                let Some(shared) = shared.upgrade() else { return };
                let updated = catch_unwind(AssertUnwindSafe(|| fanout.catch_up(&shared, |_, _| ())));
                if updated.is_err() {
                    tracing::error!("a live-query update panicked; later commits still update them");
                }
            }
        })
        .expect("the live-query thread starts")
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use serde_json::json;

    use crate::live::{Consumer, FeedEvent};
    use crate::{Database, Query};

    const WAIT: Duration = Duration::from_secs(10);

    /// A sync feed that reports each commit it is fed, then blocks until told to go on.
    fn blocking_feed(db: &Database) -> (crate::Subscription, mpsc::Receiver<usize>, mpsc::Sender<()>) {
        let (fed, fed_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let feed = Box::new(move |event: FeedEvent| {
            if let FeedEvent::Entities(snapshot, Some(_)) = event {
                fed.send(snapshot.0.len()).unwrap();
                let _ = go_rx.recv_timeout(WAIT);
            }
        });
        let sub = db.subscribe_as(None, &Query::new("todos"), Consumer::SyncFeed(feed)).unwrap();
        (sub, fed_rx, go)
    }

    #[test]
    fn commits_return_while_their_fan_out_is_still_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("fanout.db")).unwrap();
        let (_sub, fed, go) = blocking_feed(&db);
        let before = db.latest_timestamp();

        db.insert("todos", json!({"id": "a"})).unwrap();
        assert_eq!(fed.recv_timeout(WAIT), Ok(1), "the live thread is feeding the first commit");
        // The feed is stuck inside that update: writers, readers and the checkpoint go on.
        db.insert("todos", json!({"id": "b"})).unwrap();
        db.insert("todos", json!({"id": "c"})).unwrap();
        assert_eq!(db.fetch_all("todos").unwrap().len(), 3);
        let during = db.latest_timestamp();
        assert_eq!(during, before, "the checkpoint waits for the update it would pass");

        go.send(()).unwrap();
        // The two commits made meanwhile reach the feed as one update, on the state both left.
        assert_eq!(fed.recv_timeout(WAIT), Ok(3));
        go.send(()).unwrap();
        db.flush_subscriptions();
        assert!(db.latest_timestamp() > during);
        assert!(fed.try_recv().is_err(), "nothing was fed twice");
    }

    #[test]
    fn a_subscription_opened_between_commits_misses_none_and_sees_none_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("fanout.db")).unwrap();
        let (_blocked, fed, go) = blocking_feed(&db);
        db.insert("todos", json!({"id": "a"})).unwrap();
        assert_eq!(fed.recv_timeout(WAIT), Ok(1));
        db.insert("todos", json!({"id": "b"})).unwrap();
        // Opening waits for the update under way and takes the pending commit itself.
        let opener = {
            let db = db.clone();
            std::thread::spawn(move || db.subscribe(&Query::new("todos")).unwrap())
        };
        go.send(()).unwrap();
        assert_eq!(fed.recv_timeout(WAIT), Ok(2));
        go.send(()).unwrap();
        let sub = opener.join().unwrap();
        let first = sub.recv_timeout(WAIT).unwrap();
        assert_eq!(first.results.len(), 2, "the first result has both commits");
        db.insert("todos", json!({"id": "c"})).unwrap();
        assert_eq!(fed.recv_timeout(WAIT), Ok(3));
        go.send(()).unwrap();
        db.flush_subscriptions();
        let next = sub.try_recv().expect("the later commit");
        assert_eq!(next.change.added.len(), 1, "only the commit after it opened");
        assert!(sub.try_recv().is_none());
    }

    #[test]
    fn a_commit_while_the_first_subscription_opens_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("opening.db")).unwrap();
        let (fed, fed_rx) = mpsc::channel();
        let writer = db.clone();
        // While the view's first result is handed over (the store is free by then), another
        // thread commits a row the view should get: no other view is open to make it record.
        let feed = Box::new(move |event: FeedEvent| {
            if let FeedEvent::Entities(snapshot, commit) = event {
                if commit.is_none() {
                    let writer = writer.clone();
                    std::thread::spawn(move || writer.insert("todos", json!({"id": "meanwhile"})).unwrap())
                        .join()
                        .unwrap();
                }
                fed.send(snapshot.0.len()).unwrap();
            }
        });
        let _sub = db.subscribe_as(None, &Query::new("todos"), Consumer::SyncFeed(feed)).unwrap();
        db.flush_subscriptions();
        let counts: Vec<usize> = fed_rx.try_iter().collect();
        assert_eq!(counts.last(), Some(&1), "the commit made while it opened reached it: {counts:?}");
    }

    struct FixedClock(u64);

    impl crate::Clock for FixedClock {
        fn now_millis(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_fresh_checkpoint_outlives_a_restart_with_a_clock_gone_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.db");
        let open = |now: u64| Database::builder().clock(std::sync::Arc::new(FixedClock(now))).open(&path).unwrap();
        let db = open(1_000_000);
        let before = db.latest_timestamp();
        let fresh = db.fresh_checkpoint(Some(&before), std::sync::Arc::new(|| {})).expect("nothing is under way");
        assert!(fresh > before);
        assert_eq!(
            db.fresh_checkpoint(Some(&before), std::sync::Arc::new(|| {})),
            Some(fresh.clone()),
            "shared while it is later"
        );
        drop(db);
        let db = open(5);
        db.insert("todos", json!({"id": "a"})).unwrap();
        assert!(db.latest_timestamp() > fresh, "no write is stamped at or before a checkpoint handed out");
    }

    #[test]
    fn dropping_the_database_still_delivers_what_is_pending() {
        let db = Database::in_memory().unwrap();
        let sub = db.subscribe(&Query::new("todos")).unwrap();
        sub.recv_timeout(WAIT).unwrap();
        db.insert("todos", json!({"id": "a"})).unwrap();
        drop(db);
        let last = sub.recv_timeout(WAIT).expect("the pending commit was delivered");
        assert_eq!(last.results.len(), 1);
    }
}
