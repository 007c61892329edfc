//! Durability: a writer killed with SIGKILL mid-write loses nothing it had reported committed,
//! and leaves no half-written transaction.
//!
//! The test re-runs its own binary as the writer (selected by an environment variable), so the
//! child is a real separate process killed without any chance to clean up.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use triplite::Database;

const CHILD_ENV: &str = "TRIPLITE_DURABILITY_WRITER_DB";

/// Each transaction writes two entities and moves a counter; prints its number once committed.
fn run_writer(path: &str) -> ! {
    let db = Database::open(path).unwrap();
    for i in 0u64.. {
        db.transact(|tx| {
            tx.insert("items", json!({"id": format!("a{i}"), "n": i, "payload": "x".repeat(200)}))?;
            tx.insert("items", json!({"id": format!("b{i}"), "n": i}))?;
            if i == 0 {
                tx.insert("counter", json!({"id": "c", "last": 0}))?;
            } else {
                tx.update("counter", "c", json!({"last": i}))?;
            }
            Ok(())
        })
        .unwrap();
        println!("committed {i}");
    }
    unreachable!()
}

#[test]
fn sigkill_mid_write_keeps_every_reported_commit() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        run_writer(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["sigkill_mid_write_keeps_every_reported_commit", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported = None;
    let started = Instant::now();
    // Kill after a few hundred commits (bounded in time too), while the writer is mid-stream.
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("committed ") {
            reported = Some(n.parse::<u64>().unwrap());
        }
        if reported.unwrap_or(0) >= 300 || started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Lines the child printed before it died also count as reported.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("committed ") {
            reported = Some(n.parse::<u64>().unwrap());
        }
    }
    let reported = reported.expect("the writer reported at least one commit");

    let db = Database::open(&path).expect("the database reopens cleanly after SIGKILL");
    let last = db.fetch_by_id("counter", "c").unwrap().unwrap()["last"].as_u64().unwrap();
    assert!(last >= reported, "commit {reported} was reported but the counter says {last}");
    let items = db.fetch_all("items").unwrap();
    assert_eq!(items.len() as u64, 2 * (last + 1), "every committed transaction is whole, nothing else is there");
    for i in 0..=last {
        assert!(db.fetch_by_id("items", &format!("a{i}")).unwrap().is_some(), "a{i} lost");
        assert!(db.fetch_by_id("items", &format!("b{i}")).unwrap().is_some(), "b{i} lost");
    }
    // And the database takes new writes.
    db.insert("items", json!({"id": "after"})).unwrap();
}

#[test]
fn concurrent_writers_with_full_durability_keep_every_commit_and_feed_live_queries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let db = Database::builder().durability(triplite::Durability::Full).open(&path).unwrap();
    let live = db.subscribe(&triplite::Query::new("items")).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..16 {
            let db = &db;
            scope.spawn(move || {
                for i in 0..50 {
                    db.insert("items", json!({"id": format!("w{writer}-{i}"), "n": i})).unwrap();
                }
            });
        }
    });
    db.flush_subscriptions();
    let latest = std::iter::from_fn(|| live.recv_timeout(Duration::from_millis(200))).last().unwrap();
    assert_eq!(latest.results.len(), 800, "every durable commit reaches the live query");
    drop(live);
    drop(db);
    let reopened = Database::open(&path).unwrap();
    assert_eq!(reopened.fetch(&triplite::Query::new("items")).unwrap().len(), 800);
}
