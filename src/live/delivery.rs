//! Delivering results to consumers without letting a slow one hold up writers.
//!
//! Writers never wait for a consumer: each delivery replaces what a consumer has not taken
//! yet, and the consumer receives the latest result with the net change from the last result
//! it actually received. Per subscription, deliveries follow commit order.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde_json::Value as Json;

use super::edits::Edits;
use super::view::Snapshot;

/// A subscription's result after a commit changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveResult {
    /// The whole result, in the query's order (API form, includes nested). Entities are
    /// shared with the subscription and later results: an unchanged one is not copied.
    pub results: Vec<Arc<Json>>,
    /// How it differs from the result this consumer received before.
    pub change: ResultChange,
}

/// The net difference between two results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultChange {
    /// Entities that entered the result.
    pub added: Vec<Arc<Json>>,
    /// Ids of entities that left it.
    pub removed: Vec<String>,
    /// Entities still in the result whose content (attributes or includes) changed.
    pub updated: Vec<Arc<Json>>,
}

impl ResultChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// The message that brings a consumer from `old` (`None`: it has received nothing yet) to
/// `new`, or `None` when it already holds `new` (changes that cancelled out). A result that
/// only changed order has an empty `change` but is still delivered.
///
/// A commit usually changes a few rows of a large result: the rows both ends share in place
/// (the same id at the same position from the start and from the end) are compared pairwise,
/// and only the span between them is matched by id.
fn diff(old: Option<&Snapshot>, new: &Snapshot) -> Option<LiveResult> {
    let first = old.is_none();
    let (old, new_rows) = (old.map_or(&[][..], |s| &s.0[..]), &new.0[..]);
    let prefix = old.iter().zip(new_rows).take_while(|(a, b)| a.0 == b.0).count();
    let suffix =
        old[prefix..].iter().rev().zip(new_rows[prefix..].iter().rev()).take_while(|(a, b)| a.0 == b.0).count();
    let (old_span, new_span) = (&old[prefix..old.len() - suffix], &new_rows[prefix..new_rows.len() - suffix]);
    let mut change = net_change(old_span.iter().map(|(id, e)| (&**id, e)), new_span.iter().map(|(id, e)| (&**id, e)));
    let before = changed_in_place(&old[..prefix], &new_rows[..prefix]);
    let after = changed_in_place(&old[old.len() - suffix..], &new_rows[new_rows.len() - suffix..]);
    change.updated = before.into_iter().chain(change.updated).chain(after).collect();
    // Nothing between the shared ends and nothing changed in place: the consumer has it.
    if !first && change.is_empty() && old_span.is_empty() && new_span.is_empty() {
        return None;
    }
    Some(LiveResult { results: new_rows.iter().map(|(_, e)| e.clone()).collect(), change })
}

/// The entities of `new` that differ from those of `old` at the same positions (same ids).
fn changed_in_place(old: &[(Arc<str>, Arc<Json>)], new: &[(Arc<str>, Arc<Json>)]) -> Vec<Arc<Json>> {
    old.iter().zip(new).filter(|(a, b)| !Arc::ptr_eq(&a.1, &b.1) && a.1 != b.1).map(|(_, b)| b.1.clone()).collect()
}

/// What changed from `old` to `new`, entities matched by id.
pub(crate) fn net_change<'a>(
    old: impl Iterator<Item = (&'a str, &'a Arc<Json>)>,
    new: impl Iterator<Item = (&'a str, &'a Arc<Json>)>,
) -> ResultChange {
    let mut before: HashMap<&str, &Arc<Json>> = old.collect();
    let mut change = ResultChange::default();
    for (id, entity) in new {
        match before.remove(id) {
            None => change.added.push(entity.clone()),
            Some(previous) if !Arc::ptr_eq(previous, entity) && previous != entity => {
                change.updated.push(entity.clone())
            }
            Some(_) => {}
        }
    }
    let mut removed: Vec<String> = before.into_keys().map(str::to_owned).collect();
    removed.sort();
    change.removed = removed;
    change
}

/// What a sync feed receives.
pub(crate) enum FeedEvent<'a> {
    /// The view's entities after a commit — with that commit's checkpoint, which every change
    /// fed so far is at or before — or its first result (no checkpoint).
    Entities(&'a Arc<Snapshot>, Option<&'a crate::Timestamp>),
    /// The view ended: it could not be read or prepared again (after a schema change).
    Ended(&'a crate::Error),
}

/// The sync server's feed of a view's entities (see `Consumer::SyncFeed`).
pub(crate) type SyncFeed = Box<dyn FnMut(FeedEvent) + Send>;

/// Where a subscription's results go.
pub(crate) enum Sink {
    Channel(ChannelSink),
    Callback(Arc<CallbackSink>),
    /// Called where views update (see `Consumer::SyncFeed`).
    Inline(Mutex<SyncFeed>),
}

impl Sink {
    /// Delivers a result; `commit` is the checkpoint of the commit it follows, if any.
    pub(crate) fn post(&self, latest: Arc<Snapshot>, dispatcher: &Dispatcher, commit: Option<&crate::Timestamp>) {
        match self {
            Sink::Channel(sink) => sink.post(latest),
            Sink::Callback(sink) => sink.post(latest, dispatcher),
            Sink::Inline(feed) => (feed.lock())(FeedEvent::Entities(&latest, commit)),
        }
    }

    /// Delivers a view's row changes to a consumer that asked for changes only.
    pub(crate) fn post_edits(&self, edits: Edits, dispatcher: &Dispatcher) {
        match self {
            Sink::Callback(sink) if sink.changes_only => sink.post_edits(edits, dispatcher),
            _ => debug_assert!(false, "only a changes callback takes edits"),
        }
    }

    /// Whether the consumer keeps its own copy and takes changes only (see [`Sink::post_edits`]).
    pub(crate) fn wants_edits(&self) -> bool {
        matches!(self, Sink::Callback(sink) if sink.changes_only)
    }

    /// Tells a sync feed its view ended (other consumers see their channel close, or simply
    /// receive nothing more).
    pub(crate) fn end(&self, error: &crate::Error) {
        if let Sink::Inline(feed) = self {
            (feed.lock())(FeedEvent::Ended(error));
        }
    }

    /// The callback sink, which the subscription handle keeps to close it.
    pub(crate) fn callback(&self) -> Option<Arc<CallbackSink>> {
        match self {
            Sink::Callback(sink) => Some(sink.clone()),
            Sink::Channel(_) | Sink::Inline(_) => None,
        }
    }
}

/// A bounded channel of one: a result not yet received is taken back and replaced by one
/// that covers both changes.
pub(crate) struct ChannelSink {
    sender: Sender<LiveResult>,
    /// The writers' handle on the channel, to take back a result not yet received.
    reclaim: Receiver<LiveResult>,
    state: Mutex<ChannelState>,
}

struct ChannelState {
    /// The last result the consumer may have received.
    received: Option<Arc<Snapshot>>,
    /// The result in the channel, or last put there.
    sent: Option<Arc<Snapshot>>,
}

impl ChannelSink {
    pub(crate) fn new() -> (Self, Receiver<LiveResult>) {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let state = Mutex::new(ChannelState { received: None, sent: None });
        (ChannelSink { sender, reclaim: receiver.clone(), state }, receiver)
    }

    fn post(&self, latest: Arc<Snapshot>) {
        let mut state = self.state.lock();
        // Either the consumer took `sent` (the channel is empty) or we take it back now and it
        // was never seen; only writers fill the channel, and they hold `state`.
        if self.reclaim.try_recv().is_err() {
            state.received = state.sent.clone();
        }
        let message = diff(state.received.as_deref(), &latest);
        state.sent = Some(latest);
        if let Some(message) = message {
            // The channel is empty and only we fill it: this cannot block.
            let _ = self.sender.try_send(message);
        } else {
            state.received = state.sent.clone();
        }
    }
}

/// A subscriber's callback.
pub(crate) enum Callback {
    /// Receives each whole result with its change.
    Results(Box<dyn FnMut(LiveResult) + Send>),
    /// Keeps its own copy of the result and receives only what changed (the first call's
    /// `added` is the whole first result): its cost per commit is what the commit changed.
    Changes(Box<dyn FnMut(ResultChange) + Send>),
}

/// A callback, called on the database's delivery thread.
pub(crate) struct CallbackSink {
    /// Taken out (and dropped) when the subscription closes.
    callback: Mutex<Option<Callback>>,
    /// Whether the callback is a `Callback::Changes`: kept apart because writers ask, and the
    /// callback's lock is held while it runs.
    changes_only: bool,
    state: Mutex<CallbackState>,
    closed: AtomicBool,
}

#[derive(Default)]
struct CallbackState {
    delivered: Option<Arc<Snapshot>>,
    pending: Option<Arc<Snapshot>>,
    /// What a changes callback has not received yet, composed.
    pending_edits: Option<Edits>,
    /// Whether a changes callback has received its first result.
    changes_started: bool,
    /// Whether the delivery thread has this sink in its queue.
    queued: bool,
}

impl CallbackSink {
    pub(crate) fn new(callback: Callback) -> Arc<Self> {
        Arc::new(CallbackSink {
            changes_only: matches!(callback, Callback::Changes(_)),
            callback: Mutex::new(Some(callback)),
            state: Mutex::new(CallbackState::default()),
            closed: AtomicBool::new(false),
        })
    }

    fn post(self: &Arc<Self>, latest: Arc<Snapshot>, dispatcher: &Dispatcher) {
        let mut state = self.state.lock();
        state.pending = Some(latest);
        self.queue(&mut state, dispatcher);
    }

    fn post_edits(self: &Arc<Self>, edits: Edits, dispatcher: &Dispatcher) {
        let mut state = self.state.lock();
        match &mut state.pending_edits {
            Some(pending) => pending.extend(edits),
            None => state.pending_edits = Some(edits),
        }
        self.queue(&mut state, dispatcher);
    }

    fn queue(self: &Arc<Self>, state: &mut CallbackState, dispatcher: &Dispatcher) {
        if !state.queued {
            state.queued = true;
            dispatcher.send(Job::Deliver(self.clone()));
        }
    }

    /// No callback starts after this returns. Off the delivery thread it waits for a callback
    /// under way, then drops the callback here (its destructor runs on the closing thread);
    /// on it, the callback under way is the caller's own, dropped once the sink is.
    pub(crate) fn close(&self, dispatcher: &Dispatcher) {
        if std::thread::current().id() == dispatcher.thread {
            self.closed.store(true, Ordering::Release);
            return;
        }
        let callback = {
            let mut slot = self.callback.lock();
            self.closed.store(true, Ordering::Release);
            slot.take()
        };
        drop(callback);
    }

    fn deliver(&self) {
        let (message, change) = {
            let mut state = self.state.lock();
            state.queued = false;
            let message = state.pending.take().and_then(|latest| {
                let message = diff(state.delivered.as_deref(), &latest);
                state.delivered = Some(latest);
                message
            });
            let first = !state.changes_started;
            let edits = state.pending_edits.take();
            state.changes_started |= edits.is_some();
            (message, edits.map(|edits| (first, edits)))
        };
        // Composed outside the state lock, which writers take to post. Edits can cancel out (a
        // row changed and changed back): only the first result, even an empty one, is
        // delivered regardless.
        let change =
            change.map(|(first, edits)| (first, edits.into_change())).filter(|(first, c)| *first || !c.is_empty());
        let mut slot = self.callback.lock();
        let Some(callback) = slot.as_mut().filter(|_| !self.closed.load(Ordering::Acquire)) else { return };
        // A panicking callback must not take the delivery thread (and every other
        // subscription) down with it.
        let _ = catch_unwind(AssertUnwindSafe(|| match (callback, message, change) {
            (Callback::Results(callback), Some(message), _) => callback(message),
            (Callback::Changes(callback), _, Some((_, change))) => callback(change),
            _ => {}
        }));
    }
}

/// Work for the delivery thread.
enum Job {
    Deliver(Arc<CallbackSink>),
    /// Something holding a user's callback, to drop where no lock is held (dropping runs the
    /// user's destructor, which may call back into the database).
    Release(Box<dyn Send>),
}

/// The delivery thread: calls callbacks one at a time, in the order their results were posted.
pub(crate) struct Dispatcher {
    queue: Sender<Job>,
    thread: std::thread::ThreadId,
}

impl Dispatcher {
    pub(crate) fn start() -> Self {
        let (queue, pending) = crossbeam_channel::unbounded::<Job>();
        let thread = std::thread::Builder::new()
            .name("triplite-live".into())
            .spawn(move || {
                // Ends when the database (the only sender) is dropped.
                for job in pending {
                    match job {
                        Job::Deliver(sink) => sink.deliver(),
                        Job::Release(item) => drop(item),
                    }
                }
            })
            .expect("spawning the live-query delivery thread");
        Dispatcher { queue, thread: thread.thread().id() }
    }

    fn send(&self, job: Job) {
        self.queue.send(job).expect("the delivery thread lives as long as the database");
    }

    /// Drops `item` on the delivery thread.
    pub(crate) fn release(&self, item: Box<dyn Send>) {
        self.send(Job::Release(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A snapshot of rows (id, version): unique ids, an entity per version.
    fn snapshot(rows: &[(u8, u8)]) -> Snapshot {
        let mut seen = std::collections::HashSet::new();
        Snapshot(
            rows.iter()
                .filter(|(id, _)| seen.insert(*id))
                .map(|(id, v)| (Arc::from(id.to_string()), Arc::new(json!({"id": id, "v": v}))))
                .collect(),
        )
    }

    /// The reference: every row matched by id.
    fn naive(old: Option<&Snapshot>, new: &Snapshot) -> Option<LiveResult> {
        if old == Some(new) {
            return None;
        }
        let empty = Snapshot::default();
        let change = net_change(
            old.unwrap_or(&empty).0.iter().map(|(id, e)| (&**id, e)),
            new.0.iter().map(|(id, e)| (&**id, e)),
        );
        Some(LiveResult { results: new.0.iter().map(|(_, e)| e.clone()).collect(), change })
    }

    fn same(a: Option<LiveResult>, b: Option<LiveResult>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.results == b.results
                    && a.change.added == b.change.added
                    && a.change.removed == b.change.removed
                    && a.change.updated == b.change.updated
            }
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn diff_agrees_with_matching_every_row_by_id(
            old in proptest::collection::vec((0u8..24, 0u8..2), 0..30),
            edits in proptest::collection::vec((0usize..40, 0u8..24, 0u8..3), 0..4),
            unrelated in proptest::collection::vec((0u8..24, 0u8..2), 0..30),
            independent in any::<bool>(),
        ) {
            let old = snapshot(&old);
            // Mostly a few edits of the old result (what a commit does), sometimes another one.
            let new = if independent {
                snapshot(&unrelated)
            } else {
                let mut rows: Vec<(u8, u8)> =
                    old.0.iter().map(|(id, e)| (id.parse().unwrap(), e["v"].as_u64().unwrap() as u8)).collect();
                for (at, id, op) in edits {
                    let at = at % (rows.len() + 1);
                    match op {
                        0 => rows.insert(at, (id, 0)),
                        1 if at < rows.len() => { rows.remove(at); }
                        _ if at < rows.len() => rows[at].1 += 1,
                        _ => {}
                    }
                }
                snapshot(&rows)
            };
            prop_assert!(same(diff(Some(&old), &new), naive(Some(&old), &new)));
            prop_assert!(same(diff(None, &new), naive(None, &new)));
        }
    }
}
