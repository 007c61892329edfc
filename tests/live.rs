//! Live queries: every kind of change for every query shape, through sessions, on both
//! backends; coalesced delivery to slow consumers; callbacks; pagination; and a property test
//! holding every subscription's latest result to a fresh fetch of its query.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use triplite::{Database, Direction, LiveResult, Query, Schema, Session, Subscription};

use common::backends;

const WAIT: Duration = Duration::from_secs(5);

fn schema() -> Schema {
    let own = json!({"filter": [["owner", "=", "$role.userId"]]});
    Schema::from_json(&json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {
            "users": {
                "schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
                "relationships": {"todos": {"query": {"collectionName": "todos", "where": [["owner", "=", "$1.id"]]}, "cardinality": "many"}}
            },
            "todos": {
                "schema": {"type": "record", "properties": {
                    "id": {"type": "string"}, "text": {"type": "string"}, "owner": {"type": "string"},
                    "completed": {"type": "boolean", "config": {"default": false}},
                    "n": {"type": "number", "config": {"optional": true}},
                    "project_id": {"type": "string", "config": {"optional": true}}}},
                "relationships": {
                    "owner_user": {"query": {"collectionName": "users", "where": [["id", "=", "$1.owner"]]}, "cardinality": "one"},
                    "project": {"query": {"collectionName": "projects", "where": [["id", "=", "$1.project_id"]]}, "cardinality": "one"},
                    "comments": {"query": {"collectionName": "comments", "where": [["todo_id", "=", "$1.id"]]}, "cardinality": "many"}
                },
                "permissions": {"user": {"read": own, "insert": own, "update": own, "delete": own}}
            },
            "projects": {
                "schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
                "relationships": {"todos": {"query": {"collectionName": "todos", "where": [["project_id", "=", "$1.id"]]}, "cardinality": "many"}},
                // Readable by whoever owns a todo in the project: a relational rule.
                "permissions": {"user": {"read": {"filter": [{"exists": {"_extends": "todos"}}]}}}
            },
            "comments": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "todo_id": {"type": "string"}, "body": {"type": "string"}}}}
        }
    }))
    .unwrap()
}

fn todo(id: &str, owner: &str, n: i64) -> Json {
    json!({"id": id, "text": format!("todo {id}"), "owner": owner, "n": n})
}

fn ids<J: std::borrow::Borrow<Json>>(rows: &[J]) -> Vec<&str> {
    rows.iter().map(|r| r.borrow()["id"].as_str().unwrap()).collect()
}

/// Results as plain JSON, to compare with a fetch.
fn plain(rows: &[Arc<Json>]) -> Vec<Json> {
    rows.iter().map(|r| (**r).clone()).collect()
}

/// The next result, once every commit so far has reached the subscription (commits return
/// before their live queries update).
fn next(db: &Database, sub: &Subscription) -> LiveResult {
    db.flush_subscriptions();
    sub.recv_timeout(WAIT).expect("a result within the wait")
}

/// Nothing is waiting once every commit so far has reached the subscription: the last writes
/// did not change its result.
fn quiet(db: &Database, sub: &Subscription) {
    db.flush_subscriptions();
    if let Some(unexpected) = sub.try_recv() {
        panic!("no delivery expected, got {unexpected:?}");
    }
}

/// Takes the next result and checks it equals a fresh fetch of `query`.
fn next_fresh(sub: &Subscription, db: &Database, query: &Query) -> LiveResult {
    let result = next(db, sub);
    assert_eq!(plain(&result.results), db.fetch(query).unwrap(), "the live result equals a fresh fetch");
    result
}

fn added(result: &LiveResult) -> Vec<&str> {
    ids(&result.change.added)
}

fn updated(result: &LiveResult) -> Vec<&str> {
    ids(&result.change.updated)
}

fn removed(result: &LiveResult) -> Vec<&str> {
    result.change.removed.iter().map(String::as_str).collect()
}

#[test]
fn filters_see_inserts_updates_and_deletes_enter_and_leave() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        db.insert("todos", todo("t1", "alice", 1)).unwrap();
        let query = Query::new("todos").filter("completed", "=", false);
        let sub = db.subscribe(&query).unwrap();
        let first = next_fresh(&sub, &db, &query);
        assert_eq!(added(&first), vec!["t1"], "{}: the first result comes as added", backend.name);

        db.insert("todos", todo("t2", "bob", 2)).unwrap();
        assert_eq!(added(&next_fresh(&sub, &db, &query)), vec!["t2"]);
        db.insert("todos", json!({"id": "t3", "text": "done", "owner": "bob", "completed": true})).unwrap();
        quiet(&db, &sub);
        db.update("todos", "t2", json!({"text": "renamed"})).unwrap();
        let r = next_fresh(&sub, &db, &query);
        assert_eq!((added(&r), updated(&r), removed(&r)), (vec![], vec!["t2"], vec![]));
        db.update("todos", "t2", json!({"completed": true})).unwrap();
        assert_eq!(removed(&next_fresh(&sub, &db, &query)), vec!["t2"]);
        db.update("todos", "t3", json!({"completed": false})).unwrap();
        assert_eq!(added(&next_fresh(&sub, &db, &query)), vec!["t3"]);
        db.delete("todos", "t1").unwrap();
        assert_eq!(removed(&next_fresh(&sub, &db, &query)), vec!["t1"]);
        db.delete("todos", "t2").unwrap();
        quiet(&db, &sub);
        db.insert("users", json!({"id": "alice", "name": "Alice"})).unwrap();
        quiet(&db, &sub);
    }
}

#[test]
fn order_and_limit_windows_move_entities_in_and_out() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        for (id, n) in [("a", 10), ("b", 20), ("c", 30), ("d", 40), ("e", 50)] {
            db.insert("todos", todo(id, "alice", n)).unwrap();
        }
        let query = Query::new("todos").order("n", Direction::Asc).limit(3);
        let sub = db.subscribe(&query).unwrap();
        assert_eq!(ids(&next_fresh(&sub, &db, &query).results), vec!["a", "b", "c"], "{}", backend.name);

        db.insert("todos", todo("x", "bob", 5)).unwrap(); // enters first, pushes c out
        let r = next_fresh(&sub, &db, &query);
        assert_eq!((ids(&r.results), added(&r), removed(&r)), (vec!["x", "a", "b"], vec!["x"], vec!["c"]));
        db.insert("todos", todo("y", "bob", 99)).unwrap(); // beyond the window
        quiet(&db, &sub);
        db.update("todos", "b", json!({"n": 1})).unwrap(); // moves to the front
        let r = next_fresh(&sub, &db, &query);
        assert_eq!((ids(&r.results), updated(&r)), (vec!["b", "x", "a"], vec!["b"]));
        db.update("todos", "x", json!({"n": 45})).unwrap(); // leaves a full window: c slides in
        let r = next_fresh(&sub, &db, &query);
        assert_eq!((ids(&r.results), added(&r), removed(&r)), (vec!["b", "a", "c"], vec!["c"], vec!["x"]));
        db.delete("todos", "a").unwrap(); // a member deleted: d slides in
        let r = next_fresh(&sub, &db, &query);
        assert_eq!((ids(&r.results), added(&r), removed(&r)), (vec!["b", "c", "d"], vec!["d"], vec!["a"]));
        db.delete("todos", "e").unwrap(); // not a member
        quiet(&db, &sub);
        db.update("todos", "y", json!({"n": 35})).unwrap(); // between c and d: d leaves
        let r = next_fresh(&sub, &db, &query);
        assert_eq!(ids(&r.results), vec!["b", "c", "y"]);

        // Descending with ties broken by id.
        let desc = Query::new("todos").order("completed", Direction::Desc).limit(2);
        let sub = db.subscribe(&desc).unwrap();
        next_fresh(&sub, &db, &desc);
        db.update("todos", "c", json!({"completed": true})).unwrap();
        assert_eq!(ids(&next_fresh(&sub, &db, &desc).results)[0], "c");
    }
}

#[test]
fn after_cursors_admit_only_entities_past_the_cursor() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        for (id, n) in [("a", 1), ("b", 2), ("c", 3)] {
            db.insert("todos", todo(id, "alice", n)).unwrap();
        }
        let query = Query::new("todos").order("n", Direction::Asc).after(vec![json!(2)], false).limit(5);
        let sub = db.subscribe(&query).unwrap();
        assert_eq!(ids(&next_fresh(&sub, &db, &query).results), vec!["c"], "{}", backend.name);
        db.insert("todos", todo("early", "bob", 0)).unwrap();
        quiet(&db, &sub);
        db.insert("todos", todo("late", "bob", 9)).unwrap();
        assert_eq!(added(&next_fresh(&sub, &db, &query)), vec!["late"]);
        db.update("todos", "a", json!({"n": 5})).unwrap(); // crosses the cursor
        assert_eq!(ids(&next_fresh(&sub, &db, &query).results), vec!["c", "a", "late"]);
        db.update("todos", "c", json!({"n": 2})).unwrap(); // onto the cursor, exclusive
        assert_eq!(removed(&next_fresh(&sub, &db, &query)), vec!["c"]);
    }
}

#[test]
fn includes_follow_changes_to_related_entities_only() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        db.insert("users", json!({"id": "alice", "name": "Alice"})).unwrap();
        db.insert("todos", todo("t1", "alice", 1)).unwrap();
        db.insert("todos", todo("t2", "bob", 2)).unwrap();
        let query = Query::new("todos").include("owner_user").include("comments").order("n", Direction::Asc);
        let sub = db.subscribe(&query).unwrap();
        let first = next_fresh(&sub, &db, &query);
        assert_eq!(first.results[0]["owner_user"]["name"], "Alice", "{}", backend.name);
        assert_eq!(first.results[1]["owner_user"], Json::Null);

        db.update("users", "alice", json!({"name": "Alice L."})).unwrap();
        let r = next_fresh(&sub, &db, &query);
        assert_eq!(updated(&r), vec!["t1"], "only the todo whose owner changed is updated");
        db.insert("users", json!({"id": "bob", "name": "Bob"})).unwrap();
        assert_eq!(updated(&next_fresh(&sub, &db, &query)), vec!["t2"]);
        db.insert("comments", json!({"id": "c1", "todo_id": "t2", "body": "hi"})).unwrap();
        let r = next_fresh(&sub, &db, &query);
        assert_eq!(r.results[1]["comments"][0]["body"], "hi");
        db.insert("comments", json!({"id": "c2", "todo_id": "nope", "body": "elsewhere"})).unwrap();
        quiet(&db, &sub);
        db.delete("users", "bob").unwrap();
        assert_eq!(next_fresh(&sub, &db, &query).results[1]["owner_user"], Json::Null);
    }
}

#[test]
fn exists_subqueries_and_relation_paths_follow_the_entities_they_read() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        db.insert("projects", json!({"id": "p1", "name": "Garden"})).unwrap();
        db.insert("projects", json!({"id": "p2", "name": "House"})).unwrap();
        let open_projects = Query::new("projects").where_(triplite::Filter::from_json(&json!(
            {"exists": {"collectionName": "todos", "where": [["project_id", "=", "$1.id"], ["completed", "=", false]]}}
        )).unwrap());
        let projects = db.subscribe(&open_projects).unwrap();
        assert!(next_fresh(&projects, &db, &open_projects).results.is_empty(), "{}", backend.name);
        let garden_todos = Query::new("todos").filter("project.name", "=", "Garden");
        let todos = db.subscribe(&garden_todos).unwrap();
        next_fresh(&todos, &db, &garden_todos);

        db.insert("todos", json!({"id": "t1", "text": "dig", "owner": "alice", "project_id": "p1"})).unwrap();
        assert_eq!(added(&next_fresh(&projects, &db, &open_projects)), vec!["p1"]);
        assert_eq!(added(&next_fresh(&todos, &db, &garden_todos)), vec!["t1"]);
        db.update("todos", "t1", json!({"completed": true})).unwrap();
        assert_eq!(removed(&next_fresh(&projects, &db, &open_projects)), vec!["p1"]);
        assert_eq!(updated(&next_fresh(&todos, &db, &garden_todos)), vec!["t1"]);
        db.update("projects", "p1", json!({"name": "Yard"})).unwrap(); // the path no longer matches
        assert_eq!(removed(&next_fresh(&todos, &db, &garden_todos)), vec!["t1"]);
        db.update("projects", "p2", json!({"name": "Garden"})).unwrap();
        quiet(&db, &todos);
        db.update("todos", "t1", json!({"project_id": "p2", "completed": false})).unwrap();
        assert_eq!(added(&next_fresh(&todos, &db, &garden_todos)), vec!["t1"]);
        assert_eq!(added(&next_fresh(&projects, &db, &open_projects)), vec!["p2"]);
    }
}

#[test]
fn sessions_see_only_what_their_rules_let_them_read() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        let alice = db.session_from_claims(json!({"sub": "alice"})).unwrap();
        let bob = db.session_from_claims(json!({"sub": "bob"})).unwrap();
        let todos = Query::new("todos").order("n", Direction::Asc);
        let sub = alice.subscribe(&todos).unwrap();
        let fresh = |s: &Session, sub: &Subscription, q: &Query| {
            let r = next(&db, sub);
            assert_eq!(plain(&r.results), s.fetch(q).unwrap());
            r
        };
        assert!(fresh(&alice, &sub, &todos).results.is_empty(), "{}", backend.name);
        bob.insert("todos", todo("b1", "bob", 1)).unwrap();
        quiet(&db, &sub);
        alice.insert("todos", todo("a1", "alice", 2)).unwrap();
        assert_eq!(added(&fresh(&alice, &sub, &todos)), vec!["a1"]);
        // Given away: it stops being readable and leaves the result.
        db.update("todos", "a1", json!({"owner": "bob"})).unwrap();
        assert_eq!(removed(&fresh(&alice, &sub, &todos)), vec!["a1"]);
        db.update("todos", "b1", json!({"owner": "alice"})).unwrap();
        assert_eq!(added(&fresh(&alice, &sub, &todos)), vec!["b1"]);

        // A relational rule: projects readable through the todos one owns.
        db.insert("projects", json!({"id": "p1", "name": "Garden"})).unwrap();
        let projects = Query::new("projects");
        let psub = alice.subscribe(&projects).unwrap();
        assert!(fresh(&alice, &psub, &projects).results.is_empty());
        db.update("todos", "b1", json!({"project_id": "p1"})).unwrap();
        assert_eq!(added(&fresh(&alice, &psub, &projects)), vec!["p1"]);
        let _ = next(&db, &sub); // b1 changed for the todo subscription too
        db.update("todos", "b1", json!({"owner": "carol"})).unwrap();
        assert_eq!(removed(&fresh(&alice, &psub, &projects)), vec!["p1"]);
        // Included relations go through rules too.
        let with_project = Query::new("todos").include("project");
        let csub = bob.subscribe(&with_project).unwrap();
        let r = fresh(&bob, &csub, &with_project);
        assert_eq!(r.results[0]["project"], Json::Null, "bob owns no todo in p1: p1 is not readable to him");
        db.update("todos", "a1", json!({"project_id": "p1"})).unwrap();
        let r = fresh(&bob, &csub, &with_project);
        assert_eq!(r.results[0]["project"]["name"], "Garden");
    }
}

#[test]
fn remote_changes_reach_subscriptions_like_local_writes() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        let query = Query::new("todos");
        let sub = db.subscribe(&query).unwrap();
        next(&db, &sub);
        let changes = triplite::Changes::from_json(&json!({"todos": {
            "sets": {"r1": {"id": "r1", "text": "from afar", "owner": "x", "completed": false}}, "deletes": []
        }}))
        .unwrap();
        db.commit_changes(&changes).unwrap();
        assert_eq!(added(&next_fresh(&sub, &db, &query)), vec!["r1"], "{}", backend.name);
        let delete = triplite::Changes::from_json(&json!({"todos": {"sets": {}, "deletes": ["r1"]}})).unwrap();
        db.commit_changes(&delete).unwrap();
        assert_eq!(removed(&next_fresh(&sub, &db, &query)), vec!["r1"]);
    }
}

#[test]
fn a_slow_consumer_receives_one_result_with_the_net_change() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        db.insert("todos", todo("keep", "alice", 1)).unwrap();
        db.insert("todos", todo("gone", "alice", 2)).unwrap();
        let query = Query::new("todos").order("n", Direction::Asc);
        let sub = db.subscribe(&query).unwrap();
        next(&db, &sub);
        // Five commits while the consumer is not reading: none of them waits for it.
        db.insert("todos", todo("brief", "alice", 3)).unwrap();
        db.insert("todos", todo("new", "alice", 4)).unwrap();
        db.delete("todos", "brief").unwrap();
        db.update("todos", "keep", json!({"text": "edited"})).unwrap();
        db.delete("todos", "gone").unwrap();
        let r = next_fresh(&sub, &db, &query);
        assert_eq!(
            (added(&r), updated(&r), removed(&r)),
            (vec!["new"], vec!["keep"], vec!["gone"]),
            "{}: the net change from what the consumer last saw",
            backend.name
        );
        quiet(&db, &sub);

        // Never read at all: the initial result is folded in too.
        let unread = db.subscribe(&query).unwrap();
        db.insert("todos", todo("later", "alice", 5)).unwrap();
        let r = next(&db, &unread);
        assert_eq!(ids(&r.results), vec!["keep", "new", "later"]);
        assert_eq!(added(&r), vec!["keep", "new", "later"]);
        quiet(&db, &unread);
    }
}

#[test]
fn a_changes_subscription_receives_what_each_commit_changed_and_nothing_else() {
    for backend in backends() {
        let (name, db) = (backend.name, backend.open(Some(schema())));
        for n in 0..3 {
            db.insert("todos", todo(&format!("t{n}"), "alice", n)).unwrap();
        }
        let (sender, calls) = crossbeam_channel::unbounded::<triplite::ResultChange>();
        let query = Query::new("todos").filter("owner", "=", "alice").order("n", Direction::Asc);
        let _sub = db.subscribe_changes(&query, move |change| sender.send(change).unwrap()).unwrap();
        let next = || {
            db.flush_subscriptions();
            calls.recv_timeout(WAIT).expect("a call within the wait")
        };
        let first = next();
        assert_eq!(ids(&first.added), ["t0", "t1", "t2"], "{name}: the first call adds the whole result, in order");
        db.insert("todos", todo("t3", "alice", 3)).unwrap();
        assert_eq!(ids(&next().added), ["t3"], "{name}");
        db.update("todos", "t1", json!({"text": "changed"})).unwrap();
        let change = next();
        assert_eq!((ids(&change.updated), change.added.len(), change.removed.len()), (vec!["t1"], 0, 0), "{name}");
        assert_eq!(change.updated[0]["text"], "changed");
        db.update("todos", "t2", json!({"owner": "bob"})).unwrap();
        assert_eq!(next().removed, ["t2"], "{name}: leaving the filter is a removal");
        // Writes that change nothing this query returns make no call.
        db.insert("todos", todo("b1", "bob", 9)).unwrap();
        db.update("todos", "t0", json!({"text": "todo t0"})).unwrap();
        db.delete("todos", "t3").unwrap();
        let change = next();
        assert_eq!(
            (change.removed, change.added.len(), change.updated.len()),
            (vec!["t3".to_string()], 0, 0),
            "{name}"
        );
        // An empty result is still delivered first.
        let (sender, calls) = crossbeam_channel::unbounded::<triplite::ResultChange>();
        let _empty = db.subscribe_changes(&Query::new("todos").filter("owner", "=", "nobody"), move |change| {
            sender.send(change).unwrap()
        });
        db.flush_subscriptions();
        assert!(calls.recv_timeout(WAIT).unwrap().is_empty(), "{name}");
    }
}

#[test]
fn callbacks_run_on_the_delivery_thread_in_commit_order_without_blocking_writers() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        let (results, seen) = crossbeam_channel::unbounded::<LiveResult>();
        let (release, gate) = crossbeam_channel::unbounded::<()>();
        let (entered, held) = crossbeam_channel::unbounded::<()>();
        let writer = std::thread::current().id();
        let sub = db
            .subscribe_with(&Query::new("todos").order("n", Direction::Asc), move |result| {
                assert_ne!(std::thread::current().id(), writer, "callbacks never run on the writer");
                // The first delivery holds the delivery thread until the test releases it.
                if result.results.is_empty() {
                    entered.send(()).unwrap();
                    gate.recv().unwrap();
                }
                results.send(result).unwrap();
            })
            .unwrap();
        held.recv_timeout(WAIT).unwrap();
        // While the callback is held, writers carry on.
        for i in 0..20 {
            db.insert("todos", todo(&format!("t{i:02}"), "alice", i)).unwrap();
        }
        // All 20 have reached the subscription (its result waits behind the held callback).
        db.flush_subscriptions();
        release.send(()).unwrap();
        let first = seen.recv_timeout(WAIT).unwrap();
        assert!(first.results.is_empty(), "{}", backend.name);
        let second = seen.recv_timeout(WAIT).unwrap();
        assert_eq!(second.results.len(), 20, "the 20 commits arrive as one result");
        assert_eq!(second.change.added.len(), 20);
        for i in 20..25 {
            db.insert("todos", todo(&format!("t{i:02}"), "alice", i)).unwrap();
            let r = seen.recv_timeout(WAIT).unwrap();
            assert_eq!(r.results.len() as i64, i + 1, "one delivery per commit, in order");
        }
        sub.unsubscribe();
        db.insert("todos", todo("after", "alice", 99)).unwrap();
        assert!(seen.recv_timeout(Duration::from_millis(100)).is_err(), "nothing after unsubscribe");
    }
}

#[test]
fn a_panicking_callback_does_not_stop_other_subscriptions() {
    let db = Database::builder().schema(schema()).open_in_memory().unwrap();
    let _bad = db.subscribe_with(&Query::new("todos"), |_| panic!("callback failure")).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let _good = db
        .subscribe_with(&Query::new("todos"), move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + WAIT;
        while count.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        count.load(Ordering::SeqCst)
    };
    assert_eq!(wait_for(1), 1, "the initial result");
    db.insert("todos", todo("t", "a", 1)).unwrap();
    assert_eq!(wait_for(2), 2, "and the change, after the other callback panicked twice");
}

#[test]
fn dropping_a_subscription_ends_it_and_stops_capturing_changes() {
    let db = Database::builder().schema(schema()).open_in_memory().unwrap();
    let sub = db.subscribe(&Query::new("todos")).unwrap();
    let receiver = sub.receiver().unwrap().clone();
    drop(sub);
    db.insert("todos", todo("t", "a", 1)).unwrap();
    let first = receiver.recv().unwrap();
    assert!(first.results.is_empty(), "the initial result was already sent");
    assert!(receiver.recv().is_err(), "the channel closes with the subscription");
}

#[test]
fn writes_reach_only_the_subscriptions_whose_values_they_touch() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        let queries: Vec<Query> = (0..50)
            .map(|i| Query::new("todos").filter("owner", "=", format!("user-{i}")).order("n", Direction::Desc))
            .collect();
        let subs: Vec<Subscription> = queries.iter().map(|q| db.subscribe(q).unwrap()).collect();
        for sub in &subs {
            next(&db, sub);
        }
        db.insert("todos", todo("t", "user-7", 1)).unwrap();
        assert_eq!(added(&next_fresh(&subs[7], &db, &queries[7])), vec!["t"], "{}", backend.name);
        db.update("todos", "t", json!({"owner": "user-9"})).unwrap();
        for (i, sub) in subs.iter().enumerate() {
            match i {
                7 => assert_eq!(removed(&next_fresh(sub, &db, &queries[i])), vec!["t"]),
                9 => assert_eq!(added(&next_fresh(sub, &db, &queries[i])), vec!["t"]),
                _ => quiet(&db, sub),
            }
        }
        // Changes that cancel out before the consumer reads leave nothing to deliver.
        db.insert("todos", todo("u", "user-3", 1)).unwrap();
        db.delete("todos", "u").unwrap();
        quiet(&db, &subs[3]);
    }
}

#[test]
fn pages_move_forwards_and_backwards_and_stay_live() {
    for backend in backends() {
        let db = backend.open(Some(schema()));
        for i in 0..7 {
            db.insert("todos", todo(&format!("t{i}"), "alice", i)).unwrap();
        }
        let mut pages = db.subscribe_paged(&Query::new("todos").order("n", Direction::Asc), 3).unwrap();
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!(
            (ids(&page.results), page.has_next_page, page.has_previous_page),
            (vec!["t0", "t1", "t2"], true, false),
            "{}",
            backend.name
        );
        pages.next_page().unwrap();
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!(
            (ids(&page.results), page.has_next_page, page.has_previous_page),
            (vec!["t3", "t4", "t5"], true, true)
        );
        assert_eq!(
            (added(&LiveResult { results: vec![], change: page.change.clone() }), page.change.removed.len()),
            (vec!["t3", "t4", "t5"], 3)
        );
        pages.next_page().unwrap();
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!((ids(&page.results), page.has_next_page, page.has_previous_page), (vec!["t6"], false, true));
        db.insert("todos", todo("t7", "alice", 7)).unwrap(); // the last page is live
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!((ids(&page.results), page.has_next_page), (vec!["t6", "t7"], false));
        pages.prev_page().unwrap();
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!(
            (ids(&page.results), page.has_next_page, page.has_previous_page),
            (vec!["t3", "t4", "t5"], true, true)
        );
        pages.prev_page().unwrap();
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!((ids(&page.results), page.has_previous_page), (vec!["t0", "t1", "t2"], false));
        db.update("todos", "t1", json!({"text": "edited"})).unwrap();
        let page = pages.recv_timeout(WAIT).unwrap();
        assert_eq!(updated(&LiveResult { results: vec![], change: page.change }), vec!["t1"]);

        let mut list = db.subscribe_expanding(&Query::new("todos").order("n", Direction::Desc), 3).unwrap();
        let page = list.recv_timeout(WAIT).unwrap();
        assert_eq!((ids(&page.results), page.has_next_page), (vec!["t7", "t6", "t5"], true));
        list.load_more(4).unwrap();
        let page = list.recv_timeout(WAIT).unwrap();
        assert_eq!(ids(&page.results), vec!["t7", "t6", "t5", "t4", "t3", "t2", "t1"]);
        assert_eq!(added(&LiveResult { results: vec![], change: page.change }), vec!["t4", "t3", "t2", "t1"]);
        assert!(page.has_next_page);
        list.load_more(3).unwrap();
        assert!(!list.recv_timeout(WAIT).unwrap().has_next_page);
    }
}

#[test]
fn a_schema_change_re_prepares_subscriptions() {
    let db = Database::builder().schema(schema()).open_in_memory().unwrap();
    db.insert("todos", todo("t", "alice", 1)).unwrap();
    let query = Query::new("todos");
    let sub = db.subscribe(&query).unwrap();
    next(&db, &sub);
    let mut json = schema().to_json();
    json["collections"]["todos"]["schema"]["properties"]["note"] =
        json!({"type": "string", "config": {"default": "-"}});
    db.set_schema(Schema::from_json(&json).unwrap()).unwrap();
    db.update("todos", "t", json!({"note": "new attribute"})).unwrap();
    let r = next_fresh(&sub, &db, &query);
    assert_eq!(r.results[0]["note"], "new attribute");
}

// ---- The property: after any sequence of writes, every subscription equals a fresh fetch.

#[derive(Debug, Clone)]
enum Op {
    InsertTodo { id: u8, owner: u8, n: i8, project: Option<u8>, completed: bool },
    UpdateTodo { id: u8, n: Option<i8>, owner: Option<u8>, project: Option<Option<u8>>, completed: Option<bool> },
    DeleteTodo { id: u8 },
    UpsertProject { id: u8, name: u8 },
    DeleteProject { id: u8 },
    UpsertUser { id: u8, name: u8 },
    Comment { id: u8, todo: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u8..8;
    prop_oneof![
        3 => (id.clone(), 0u8..3, -5i8..5, proptest::option::of(0u8..3), any::<bool>())
            .prop_map(|(id, owner, n, project, completed)| Op::InsertTodo { id, owner, n, project, completed }),
        3 => (id.clone(), proptest::option::of(-5i8..5), proptest::option::of(0u8..3), proptest::option::of(proptest::option::of(0u8..3)), proptest::option::of(any::<bool>()))
            .prop_map(|(id, n, owner, project, completed)| Op::UpdateTodo { id, n, owner, project, completed }),
        2 => id.clone().prop_map(|id| Op::DeleteTodo { id }),
        1 => (0u8..3, 0u8..2).prop_map(|(id, name)| Op::UpsertProject { id, name }),
        1 => (0u8..3).prop_map(|id| Op::DeleteProject { id }),
        1 => (0u8..3, 0u8..3).prop_map(|(id, name)| Op::UpsertUser { id, name }),
        1 => (0u8..4, id).prop_map(|(id, todo)| Op::Comment { id, todo }),
    ]
}

fn apply(db: &Database, op: &Op) {
    let result = match op {
        Op::InsertTodo { id, owner, n, project, completed } => {
            let mut doc = json!({"id": format!("t{id}"), "text": format!("t{id}"), "owner": format!("u{owner}"), "n": n, "completed": completed});
            if let Some(p) = project {
                doc["project_id"] = json!(format!("p{p}"));
            }
            db.insert("todos", doc).map(drop)
        }
        Op::UpdateTodo { id, n, owner, project, completed } => {
            let mut patch = serde_json::Map::new();
            if let Some(n) = n {
                patch.insert("n".into(), json!(n));
            }
            if let Some(owner) = owner {
                patch.insert("owner".into(), json!(format!("u{owner}")));
            }
            if let Some(project) = project {
                patch.insert("project_id".into(), project.map_or(Json::Null, |p| json!(format!("p{p}"))));
            }
            if let Some(completed) = completed {
                patch.insert("completed".into(), json!(completed));
            }
            match db.update("todos", &format!("t{id}"), Json::Object(patch)) {
                Err(triplite::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        }
        Op::DeleteTodo { id } => db.delete("todos", &format!("t{id}")),
        Op::UpsertProject { id, name } => {
            db.insert("projects", json!({"id": format!("p{id}"), "name": format!("name{name}")})).map(drop)
        }
        Op::DeleteProject { id } => db.delete("projects", &format!("p{id}")),
        Op::UpsertUser { id, name } => {
            db.insert("users", json!({"id": format!("u{id}"), "name": format!("user{name}")})).map(drop)
        }
        Op::Comment { id, todo } => {
            db.insert("comments", json!({"id": format!("c{id}"), "todo_id": format!("t{todo}"), "body": "x"})).map(drop)
        }
    };
    result.unwrap();
}

fn exists_open_todo() -> triplite::Filter {
    triplite::Filter::from_json(&json!({"exists": {"collectionName": "todos", "where": [["project_id", "=", "$1.id"], ["completed", "=", false]]}})).unwrap()
}

/// Query shapes: filters, windows, cursors, includes, `exists`, relation paths, relational order.
fn shapes() -> Vec<Query> {
    vec![
        Query::new("todos"),
        Query::new("todos").filter("completed", "=", false).order("n", Direction::Desc).limit(3),
        Query::new("todos").filter("owner", "=", "u1").order("n", Direction::Asc).limit(2),
        Query::new("todos").order("n", Direction::Asc).after(vec![json!(0)], true).limit(3),
        Query::new("todos").include("owner_user").include("comments").order("n", Direction::Asc).limit(4),
        Query::new("todos").filter("project.name", "=", "name0"),
        Query::new("todos").order("project.name", Direction::Asc).order("id", Direction::Asc).limit(3),
        Query::new("projects").where_(exists_open_todo()).include("todos"),
        Query::new("users").include_with("open", "todos", Query::new("todos").filter("completed", "=", false)),
    ]
}

/// A consumer's own copy of a result, kept from changes only (`subscribe_changes`).
#[derive(Default)]
struct OwnCopy {
    rows: std::collections::BTreeMap<String, Json>,
    calls: usize,
    /// What the calls did wrong (checked outside the callback, whose panics are caught).
    violations: Vec<String>,
}

impl OwnCopy {
    fn follow(copy: &SharedCopy) -> impl FnMut(triplite::ResultChange) + Send + 'static {
        let copy = copy.clone();
        move |change| {
            let mut copy = copy.lock().unwrap();
            if copy.calls > 0 && change.is_empty() {
                copy.violations.push("a call after the first changed nothing".into());
            }
            copy.calls += 1;
            for id in &change.removed {
                if copy.rows.remove(id).is_none() {
                    copy.violations.push(format!("{id} left, but was not in the result"));
                }
            }
            for entity in &change.added {
                let id = entity["id"].as_str().unwrap().to_owned();
                if copy.rows.insert(id, (**entity).clone()).is_some() {
                    copy.violations.push(format!("{entity} entered twice"));
                }
            }
            for entity in &change.updated {
                let id = entity["id"].as_str().unwrap().to_owned();
                if copy.rows.insert(id, (**entity).clone()).is_none() {
                    copy.violations.push(format!("{entity} changed outside the result"));
                }
            }
        }
    }

    fn check(&self, fresh: &[Json]) -> Result<(), TestCaseError> {
        let by_id: std::collections::BTreeMap<String, Json> =
            fresh.iter().map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone())).collect();
        prop_assert_eq!(&self.rows, &by_id);
        prop_assert!(self.violations.is_empty(), "{:?}", self.violations);
        Ok(())
    }
}

type SharedCopy = Arc<std::sync::Mutex<OwnCopy>>;

/// Waits until the delivery thread has run every callback queued so far: it runs them in
/// order, so a new subscription's first callback comes after them.
fn drain_callbacks(db: &Database) {
    db.flush_subscriptions();
    let (done, called) = crossbeam_channel::bounded(1);
    let _probe = db
        .subscribe_with(&Query::new("comments").limit(0), move |_| {
            let _ = done.try_send(());
        })
        .unwrap();
    called.recv_timeout(WAIT).expect("the delivery thread runs");
}

fn check_live(db: &Database, ops: &[Op]) -> Result<(), TestCaseError> {
    let alice = db.session_from_claims(json!({"sub": "u1"})).unwrap();
    let mut subs: Vec<(Option<&Session>, Query, Subscription, Option<LiveResult>)> = Vec::new();
    let mut copies: Vec<(Option<&Session>, Query, Subscription, SharedCopy)> = Vec::new();
    for query in shapes() {
        subs.push((None, query.clone(), db.subscribe(&query).unwrap(), None));
        let copy = Arc::default();
        copies.push((None, query.clone(), db.subscribe_changes(&query, OwnCopy::follow(&copy)).unwrap(), copy));
    }
    for query in [Query::new("todos").order("n", Direction::Asc).limit(2), Query::new("projects").include("todos")] {
        subs.push((Some(&alice), query.clone(), alice.subscribe(&query).unwrap(), None));
        let copy = Arc::default();
        copies.push((
            Some(&alice),
            query.clone(),
            alice.subscribe_changes(&query, OwnCopy::follow(&copy)).unwrap(),
            copy,
        ));
    }
    // Some subscriptions are read after every write, some only at the end (coalesced).
    for (step, op) in ops.iter().enumerate() {
        apply(db, op);
        db.flush_subscriptions();
        for (i, (session, query, sub, latest)) in subs.iter_mut().enumerate() {
            if i % 2 == 1 && step + 1 < ops.len() {
                continue;
            }
            while let Some(result) = sub.try_recv() {
                *latest = Some(result);
            }
            let fresh = match session {
                Some(s) => s.fetch(query).unwrap(),
                None => db.fetch(query).unwrap(),
            };
            let got = latest.as_ref().map(|r| plain(&r.results));
            prop_assert_eq!(got, Some(fresh), "query {} after {:?}", query.to_json(), &ops[..=step]);
        }
        // Changes consumers are checked every third write and at the end (what a callback had
        // not received meanwhile arrives composed).
        if step % 3 == 2 || step + 1 == ops.len() {
            drain_callbacks(db);
            for (session, query, _sub, copy) in &copies {
                let fresh = match session {
                    Some(s) => s.fetch(query).unwrap(),
                    None => db.fetch(query).unwrap(),
                };
                copy.lock().unwrap().check(&fresh)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_subscription_equals_a_fresh_fetch_in_memory(ops in proptest::collection::vec(op(), 1..30)) {
        let db = Database::builder().schema(schema()).open_in_memory().unwrap();
        check_live(&db, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn every_subscription_equals_a_fresh_fetch_on_sqlite(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder().schema(schema()).open(dir.path().join("live.db")).unwrap();
        check_live(&db, &ops)?;
    }
}

#[test]
fn callbacks_may_write_and_drop_subscriptions_without_deadlock() {
    let db = Database::builder().schema(schema()).open_in_memory().unwrap();
    let query = Query::new("todos");
    // A callback that drops another subscription and writes.
    let slot = Arc::new(std::sync::Mutex::new(Some(db.subscribe(&query).unwrap())));
    let (sizes, seen) = crossbeam_channel::unbounded::<usize>();
    let writer = db.clone();
    let held = slot.clone();
    let _outer = db
        .subscribe_with(&query, move |result| {
            held.lock().unwrap().take();
            if result.results.len() == 1 {
                writer.insert("todos", todo("second", "alice", 2)).unwrap();
            }
            sizes.send(result.results.len()).unwrap();
        })
        .unwrap();
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), 0);
    db.insert("todos", todo("first", "alice", 1)).unwrap();
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), 1);
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), 2, "the callback's own write is delivered after it returns");
    assert!(slot.lock().unwrap().is_none());

    // A callback owning a subscription: ending it drops that one too (on the delivery thread).
    let captured = db.subscribe(&query).unwrap();
    let owner = db
        .subscribe_with(&query, move |_| {
            let _kept = &captured;
        })
        .unwrap();
    drop(owner);
    db.insert("todos", todo("third", "alice", 3)).unwrap();
    let probe = db.subscribe(&query).unwrap();
    assert_eq!(next(&db, &probe).results.len(), 3);
}
