//! Group commit for [`Durability::Full`](super::Durability::Full): one `fsync` of the write-ahead
//! log makes every commit written before it durable, so writers that commit while a sync is
//! under way share the next one instead of each waiting for its own.
//!
//! SQLite runs with `synchronous=NORMAL` (a commit writes its WAL frames, no sync) and the
//! writer syncs the WAL file itself, after releasing the store: a commit takes a ticket under
//! the store lock, then [`GroupCommit::wait`] returns once a sync that started after that
//! commit has finished. The first waiter to find no sync under way syncs for everyone
//! committed so far; the others wait for it, and find themselves covered or sync next. This
//! is what `synchronous=FULL` guarantees per commit (the WAL on disk before the commit is
//! acknowledged), with one sync per group instead of one per commit.

use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::Result;

pub(crate) struct GroupCommit {
    wal: PathBuf,
    state: Mutex<State>,
    synced: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets handed out: commits whose WAL frames are written.
    committed: u64,
    /// Every commit up to this ticket is on disk.
    durable: u64,
    syncing: bool,
    /// The WAL file, opened at the first sync (SQLite creates it at the first write).
    file: Option<File>,
    /// Syncs done, for the tests.
    syncs: u64,
    /// Why a sync failed. After a failed `fsync` the kernel may drop the unwritten pages and
    /// report success next time, so no later sync proves anything: every wait fails from then
    /// on, and the database must be reopened (SQLite then recovers what the log holds).
    failed: Option<String>,
}

impl GroupCommit {
    /// For the database file at `path` (its WAL is `<path>-wal`).
    pub(crate) fn new(path: &Path) -> GroupCommit {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        GroupCommit { wal: PathBuf::from(wal), state: Mutex::default(), synced: Condvar::new() }
    }

    /// A commit's ticket: taken under the store lock right after the commit, so tickets follow
    /// commit order.
    pub(crate) fn committed(&self) -> u64 {
        let mut state = self.state.lock();
        state.committed += 1;
        state.committed
    }

    /// Takes a ticket for a commit just made and waits for it: for commits made outside a
    /// transaction (the schema, a checkpoint, the client id), under the store lock.
    pub(crate) fn sync_latest(&self) -> Result<()> {
        self.wait(self.committed())
    }

    /// Returns once commit `ticket` is on disk. After a failed sync, every wait fails: its
    /// commit is written but not known to be durable.
    pub(crate) fn wait(&self, ticket: u64) -> Result<()> {
        let mut state = self.state.lock();
        while state.durable < ticket {
            if let Some(why) = &state.failed {
                return Err(std::io::Error::other(format!(
                    "syncing the write-ahead log failed ({why}); whether commits since are on disk is unknown: reopen the database"
                ))
                .into());
            }
            if state.syncing {
                self.synced.wait(&mut state);
                continue;
            }
            state.syncing = true;
            let target = state.committed;
            let file = match state.file.take() {
                Some(file) => Ok(file),
                None => self.open_wal(),
            };
            let (file, synced) = MutexGuard::unlocked(&mut state, || match file {
                Ok(file) => {
                    let synced = file.sync_data();
                    (Some(file), synced)
                }
                Err(e) => (None, Err(e)),
            });
            state.file = file;
            state.syncing = false;
            match &synced {
                Ok(()) => {
                    state.durable = state.durable.max(target);
                    state.syncs += 1;
                }
                Err(e) => state.failed = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
        Ok(())
    }

    /// Opens the WAL and syncs its directory once, so the file itself survives a power loss
    /// right after SQLite created it.
    fn open_wal(&self) -> std::io::Result<File> {
        let file = File::options().read(true).write(true).open(&self.wal)?;
        if let Some(dir) = self.wal.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(file)
    }

    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn concurrent_commits_share_syncs_and_none_returns_before_its_own_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        std::fs::write(dir.path().join("t.db-wal"), b"frames").unwrap();
        let group = Arc::new(GroupCommit::new(&db));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let group = group.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let ticket = group.committed();
                        group.wait(ticket).unwrap();
                        assert!(group.state.lock().durable >= ticket);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let syncs = group.syncs();
        assert!((1..800).contains(&syncs), "{syncs} syncs for 800 commits");
        // Alone, every commit gets a sync of its own.
        let before = group.syncs();
        for _ in 0..3 {
            let ticket = group.committed();
            group.wait(ticket).unwrap();
        }
        assert_eq!(group.syncs() - before, 3);
    }

    #[test]
    fn after_a_failed_sync_every_wait_fails() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let group = GroupCommit::new(&db);
        let ticket = group.committed();
        // No WAL file: the sync fails, and says why.
        let error = group.wait(ticket).unwrap_err().to_string();
        assert!(error.contains("reopen the database"), "{error}");
        // A later sync could succeed without the lost pages: nothing is durable from now on.
        std::fs::write(dir.path().join("t.db-wal"), b"frames").unwrap();
        assert!(group.wait(ticket).is_err());
        assert!(group.sync_latest().is_err());
        assert_eq!(group.syncs(), 0);
    }
}
