//! Live queries: subscriptions whose results are kept up to date after every commit.
//!
//! Commits reach `LiveQueries::after_commit` one batch at a time, in commit order, off the
//! committing thread (`db::fanout`), with a backend that reads exactly the state the batch
//! left: a reader connection whose snapshot began while the store was locked (a SQLite file),
//! or the writer's connection, still locked (in memory). `routes` picks the views a change can
//! affect, `view` updates each one (in place where it can), and `delivery` hands new results
//! to consumers without waiting for them.

mod delivery;
mod edits;
mod pages;
mod routes;
mod view;

pub use delivery::{LiveResult, ResultChange};
pub use pages::{ExpandingSubscription, Page, PagedSubscription};

pub(crate) use pages::Subscribe;

pub(crate) use view::{Change, Snapshot, Source, entity_key, split_entity_key};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::error::Result;
use crate::query::{Executor, Prepared};
use crate::schema::Schema;
use crate::store::Backend;
use delivery::{Callback, CallbackSink, ChannelSink, Dispatcher, Sink};
pub(crate) use delivery::{FeedEvent, SyncFeed};
use routes::{Routes, ViewId};
use view::{Output, View};

/// Every open subscription of one database.
#[derive(Default)]
pub(crate) struct LiveQueries {
    registry: Mutex<Registry>,
    /// Subscriptions dropped, whose views are removed by the next holder of `registry`: a
    /// handle may be dropped where that lock is held (inside a feed, while commits update views).
    released: Mutex<Vec<ViewId>>,
    /// How many views are open: writers record what they change only when some are.
    open: AtomicUsize,
    /// How many views are being opened: counted from before their first result is read, so
    /// a commit meanwhile records what it changes for them.
    opening: AtomicUsize,
    dispatcher: OnceLock<Dispatcher>,
}

#[derive(Default)]
struct Registry {
    next_id: ViewId,
    views: HashMap<ViewId, Entry>,
    routes: Routes,
}

struct Entry {
    view: View,
    sink: Sink,
    /// The last result posted, for sinks that take whole results (`None` for changes only).
    published: Option<Arc<view::Snapshot>>,
}

/// How a new subscription wants its results.
pub(crate) enum Consumer {
    Channel,
    Callback(Box<dyn FnMut(LiveResult) + Send>),
    /// A callback that keeps its own copy of the result and receives only what changed; see
    /// `crate::Database::subscribe_changes`.
    Changes(Box<dyn FnMut(ResultChange) + Send>),
    /// The sync server's feed: every entity a client needs for the query (encoded form, keyed
    /// by [`split_entity_key`]), handed over where the views update (the database's live
    /// thread, or a caller catching up) — so in commit order, and the callback must be quick
    /// and must not use the database.
    SyncFeed(SyncFeed),
}

impl LiveQueries {
    /// Whether any subscription is open (they open under the store lock).
    pub(crate) fn is_active(&self) -> bool {
        self.open.load(Ordering::Acquire) + self.opening.load(Ordering::Acquire) > 0
    }

    /// Counts a view as active until the returned guard goes: take it before the view's first
    /// result is read, so no commit between that read and the view's registration goes
    /// unrecorded (a commit checks whether any view is active when it starts).
    pub(crate) fn opening(&self) -> Opening<'_> {
        self.opening.fetch_add(1, Ordering::AcqRel);
        Opening(self)
    }

    fn dispatcher(&self) -> &Dispatcher {
        self.dispatcher.get_or_init(Dispatcher::start)
    }

    /// Opens a view and delivers its first result. The caller holds the store lock, so no
    /// commit falls between the first result and the registration.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        backend: &dyn Backend,
        schema: Option<&Schema>,
        source: Source,
        query: Prepared,
        consumer: Consumer,
    ) -> Result<Subscription> {
        let output = if matches!(consumer, Consumer::SyncFeed(_)) { Output::Entities } else { Output::Results };
        let track_edits = matches!(consumer, Consumer::Changes(_));
        let mut view = View::new(source, query, output, track_edits, &Executor::new(backend, schema))?;
        let (sink, receiver) = match consumer {
            Consumer::Channel => {
                let (sink, receiver) = ChannelSink::new();
                (Sink::Channel(sink), Some(receiver))
            }
            Consumer::Callback(callback) => (Sink::Callback(CallbackSink::new(Callback::Results(callback))), None),
            Consumer::Changes(callback) => (Sink::Callback(CallbackSink::new(Callback::Changes(callback))), None),
            Consumer::SyncFeed(feed) => (Sink::Inline(Mutex::new(feed)), None),
        };
        let first = if track_edits {
            sink.post_edits(view.take_edits(), self.dispatcher());
            None
        } else {
            let first = Arc::new(view.snapshot());
            sink.post(first.clone(), self.dispatcher(), None);
            Some(first)
        };
        let callback = sink.callback();
        let mut registry = self.lock_registry();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.routes.add(id, &view.deps);
        registry.views.insert(id, Entry { view, sink, published: first });
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(Subscription { id, live: self.clone(), receiver, callback })
    }

    /// A subscription handle was dropped: its view goes now if the registry is free, else when
    /// its holder lets it go. Never blocks.
    fn release(&self, id: ViewId) {
        self.released.lock().push(id);
        if let Some(registry) = self.registry.try_lock() {
            drop(Locked { live: self, registry: Some(registry) });
        }
    }

    /// The registry, swept of released views now and when it is let go.
    fn lock_registry(&self) -> Locked<'_> {
        let mut registry = self.registry.lock();
        self.sweep(&mut registry);
        Locked { live: self, registry: Some(registry) }
    }

    /// Removes the views of released handles. Entries holding a user's callback are dropped
    /// on the delivery thread, where no lock is held.
    fn sweep(&self, registry: &mut Registry) {
        let released = std::mem::take(&mut *self.released.lock());
        for id in released {
            self.remove(registry, id, None);
        }
    }

    /// Removes a view: released by its handle, or failed (`error`, which its feed learns).
    fn remove(&self, registry: &mut Registry, id: ViewId, error: Option<&crate::Error>) {
        if let Some(entry) = registry.views.remove(&id) {
            if let Some(error) = error {
                entry.sink.end(error);
            }
            registry.routes.remove(id, &entry.view.deps);
            self.open.fetch_sub(1, Ordering::AcqRel);
            if entry.sink.callback().is_some() {
                self.dispatcher().release(Box::new(entry));
            }
        }
    }

    /// Updates the views one commit can affect and delivers the results that changed; the
    /// commit's `checkpoint` goes to sync feeds with them.
    pub(crate) fn after_commit(
        &self,
        backend: &dyn Backend,
        schema: Option<&Schema>,
        changes: Vec<Change>,
        checkpoint: &crate::Timestamp,
    ) {
        let mut registry = self.lock_registry();
        let mut routed: BTreeMap<ViewId, Vec<&Change>> = BTreeMap::new();
        let mut candidates = BTreeSet::new();
        for change in &changes {
            candidates.clear();
            registry.routes.candidates(change, &mut candidates);
            for id in &candidates {
                routed.entry(*id).or_default().push(change);
            }
        }
        let exec = Executor::new(backend, schema);
        for (id, changes) in routed {
            let entry = registry.views.get_mut(&id).expect("routes name only open views");
            match entry.view.apply(&exec, &changes) {
                Ok(false) => {}
                Ok(true) => self.publish(entry, Some(checkpoint)),
                // A view that cannot be read any more (storage failing) ends; its consumer
                // sees the channel close.
                Err(e) => self.remove(&mut registry, id, Some(&e)),
            }
        }
    }

    /// Prepares every view again for a new schema and re-reads it; a view whose query the new
    /// schema rejects ends.
    pub(crate) fn schema_changed(
        &self,
        backend: &dyn Backend,
        schema: Option<&Schema>,
        prepare: &dyn Fn(&Source) -> Result<Prepared>,
    ) {
        let mut registry = self.lock_registry();
        let exec = Executor::new(backend, schema);
        let mut failed = Vec::new();
        let ids: Vec<ViewId> = registry.views.keys().copied().collect();
        for id in ids {
            let registry = &mut *registry;
            let entry = registry.views.get_mut(&id).expect("listed just now");
            registry.routes.remove(id, &entry.view.deps);
            match prepare(&entry.view.source).and_then(|query| entry.view.prepared_again(query, &exec)) {
                Ok(()) => {
                    registry.routes.add(id, &entry.view.deps);
                    self.publish(entry, None);
                }
                Err(e) => failed.push((id, e)),
            }
        }
        for (id, error) in failed {
            self.remove(&mut registry, id, Some(&error));
        }
    }

    fn publish(&self, entry: &mut Entry, commit: Option<&crate::Timestamp>) {
        if entry.sink.wants_edits() {
            let edits = entry.view.take_edits();
            if !edits.is_empty() {
                entry.sink.post_edits(edits, self.dispatcher());
            }
            return;
        }
        let latest = Arc::new(entry.view.snapshot());
        if entry.published.as_ref() != Some(&latest) {
            entry.published = Some(latest.clone());
            entry.sink.post(latest, self.dispatcher(), commit);
        }
    }
}

/// A view being opened (see [`LiveQueries::opening`]).
pub(crate) struct Opening<'a>(&'a LiveQueries);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The locked registry. Letting it go sweeps released views, and again after unlocking while
/// any are left: a handle dropped while the lock is held (a connection that left during a
/// commit's update, or while another release swept) finds the lock taken and leaves its view
/// to the holder — which, on a quiet server, may be the last one for a long time.
struct Locked<'a> {
    live: &'a LiveQueries,
    registry: Option<parking_lot::MutexGuard<'a, Registry>>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        self.registry.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Registry {
        self.registry.as_mut().expect("held until drop")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        while let Some(mut registry) = self.registry.take() {
            self.live.sweep(&mut registry);
            drop(registry);
            // A release that found the lock taken pushed its id before trying it: seen here.
            if !self.live.released.lock().is_empty() {
                self.registry = self.live.registry.try_lock();
            }
        }
    }
}

/// An open live query. Dropping it (or calling [`Subscription::unsubscribe`]) ends it.
///
/// A subscription made with [`crate::Database::subscribe`] receives [`LiveResult`]s over a
/// channel: the first carries the initial result, each later one follows a commit that changed
/// it. A consumer that falls behind never blocks writers: it finds one result waiting, the
/// latest, whose `change` is the net difference from the last result it received. A
/// subscription made with a callback has no channel; see [`crate::Database::subscribe_with`].
pub struct Subscription {
    id: ViewId,
    live: Arc<LiveQueries>,
    receiver: Option<Receiver<LiveResult>>,
    /// A callback subscription's sink, closed the moment the handle goes.
    callback: Option<Arc<CallbackSink>>,
}

impl Subscription {
    /// The channel results arrive on (`None` for a callback subscription), for `select!`.
    pub fn receiver(&self) -> Option<&Receiver<LiveResult>> {
        self.receiver.as_ref()
    }

    /// Waits for the next result. `None` once the subscription has ended (a schema change made
    /// its query invalid, or storage failed) or for a callback subscription.
    pub fn recv(&self) -> Option<LiveResult> {
        self.receiver.as_ref()?.recv().ok()
    }

    /// Waits at most `timeout` for the next result.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<LiveResult> {
        self.receiver.as_ref()?.recv_timeout(timeout).ok()
    }

    /// The next result if one is waiting.
    pub fn try_recv(&self) -> Option<LiveResult> {
        self.receiver.as_ref()?.try_recv().ok()
    }

    /// Ends the subscription. A channel receives nothing more; no callback starts after this
    /// returns (called from elsewhere than the callback itself, it waits for one under way).
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(sink) = &self.callback {
            sink.close(self.live.dispatcher());
        }
        self.live.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Database, Query};

    #[test]
    fn a_view_released_while_the_registry_is_held_goes_when_the_holder_lets_go() {
        let db = Database::in_memory().unwrap();
        let live = db.live_queries().clone();
        let subscriptions: Vec<_> = (0..3).map(|_| db.subscribe(&Query::new("todos")).unwrap()).collect();
        let held = live.lock_registry();
        // Dropped elsewhere while the lock is held: each release finds it taken.
        std::thread::spawn(move || drop(subscriptions)).join().unwrap();
        assert_eq!(held.views.len(), 3);
        drop(held);
        assert!(live.registry.lock().views.is_empty(), "no later commit is needed");
        assert!(!live.is_active());
    }
}
