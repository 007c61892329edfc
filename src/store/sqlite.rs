//! The SQLite backend (bundled SQLite through rusqlite, WAL journal).
//!
//! Layout: `meta(key, value)` for our own metadata (schema, clock), `collections(name, tbl)`
//! mapping each collection to its own table `c<N>` (collection names are case-sensitive, SQLite
//! identifiers are not, so names are never used as identifiers). A collection table holds one
//! row per entity: `id`, `doc` (the visible document as JSON text, NULL when deleted — what
//! queries read and what indexes are built on), `state` (the packed merge state) and `changed`
//! (the latest timestamp as sortable bytes). Our own layout evolves through numbered migrations
//! tracked in `PRAGMA user_version`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::state::EntityState;
use super::{Backend, Document, RowWrite};
use crate::error::{Error, Result};

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed transaction survives the process being
    /// killed at any moment; the last commits may be lost if the whole machine loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it returns, surviving power loss.
    Full,
}

/// Our own table layout, one step per entry; `user_version` counts the steps applied.
const MIGRATIONS: &[&str] = &[
    // 1: metadata and the collection registry.
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE collections (name TEXT PRIMARY KEY NOT NULL, tbl TEXT NOT NULL UNIQUE) WITHOUT ROWID;",
];

/// SQL statements of one collection table, formatted once.
struct TableSql {
    insert: String,
    upsert: String,
    select_state: String,
    select_doc: String,
    scan: String,
}

impl TableSql {
    fn new(table: &str) -> Self {
        TableSql {
            insert: format!(
                "INSERT INTO {table} (id, doc, state, changed) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING"
            ),
            upsert: format!("INSERT OR REPLACE INTO {table} (id, doc, state, changed) VALUES (?1, ?2, ?3, ?4)"),
            select_state: format!("SELECT state, doc FROM {table} WHERE id = ?1"),
            select_doc: format!("SELECT doc FROM {table} WHERE id = ?1"),
            scan: format!("SELECT id, doc FROM {table} WHERE doc IS NOT NULL ORDER BY id"),
        }
    }
}

pub(crate) struct SqliteBackend {
    conn: Connection,
    /// Collection name → its table's statements; cleared on rollback, which may undo a CREATE.
    tables: HashMap<String, Arc<TableSql>>,
}

impl SqliteBackend {
    /// Opens (creating if needed) a database file.
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        Self::configure(conn, durability)
    }

    fn configure(conn: Connection, durability: Durability) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Another process (or a second handle) holding the write lock: wait rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut backend = SqliteBackend { conn, tables: HashMap::new() };
        backend.migrate()?;
        Ok(backend)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: usize = self.conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::Corrupt(format!(
                "database layout version {version} is newer than this build of triplite understands ({})",
                MIGRATIONS.len()
            )));
        }
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (step + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The statements for a collection's table, if the table exists.
    fn existing_table(&mut self, collection: &str) -> Result<Option<Arc<TableSql>>> {
        if !self.tables.contains_key(collection) {
            let table: Option<String> = self
                .conn
                .prepare_cached("SELECT tbl FROM collections WHERE name = ?1")?
                .query_row([collection], |row| row.get(0))
                .optional()?;
            let Some(table) = table else { return Ok(None) };
            self.tables.insert(collection.to_owned(), Arc::new(TableSql::new(&table)));
        }
        Ok(self.tables.get(collection).cloned())
    }

    /// The statements for a collection's table, creating the table on first use.
    fn table(&mut self, collection: &str) -> Result<Arc<TableSql>> {
        if let Some(sql) = self.existing_table(collection)? {
            return Ok(sql);
        }
        {
            let next: i64 = self.conn.query_row("SELECT COUNT(*) + 1 FROM collections", [], |row| row.get(0))?;
            let table = format!("c{next}");
            self.conn.execute_batch(&format!(
                "CREATE TABLE {table} (id TEXT PRIMARY KEY NOT NULL, doc TEXT, state BLOB NOT NULL, changed BLOB NOT NULL) WITHOUT ROWID;"
            ))?;
            self.conn.execute("INSERT INTO collections (name, tbl) VALUES (?1, ?2)", params![collection, table])?;
            let sql = Arc::new(TableSql::new(&table));
            self.tables.insert(collection.to_owned(), sql.clone());
            Ok(sql)
        }
    }

    fn row_params(row: &RowWrite) -> (Option<String>, Vec<u8>, Vec<u8>) {
        let doc = row.doc.map(|d| serde_json::to_string(d).expect("documents always serialize"));
        (doc, row.state.to_bytes(), row.changed.sort_key())
    }
}

fn parse_doc(text: &str) -> Result<Document> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("stored document: {e}")))
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<()> {
        // IMMEDIATE takes the write lock now, so a transaction never fails half-way on a lock.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            // Nothing more can be done if ROLLBACK itself fails; SQLite then rolls back on close.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.tables.clear();
    }

    fn read_state(&mut self, collection: &str, id: &str) -> Result<Option<EntityState>> {
        let Some(sql) = self.existing_table(collection)? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&sql.select_state)?;
        let row: Option<(Vec<u8>, Option<String>)> =
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
        let Some((bytes, doc)) = row else { return Ok(None) };
        let doc = doc.map(|text| parse_doc(&text)).transpose()?;
        EntityState::from_bytes(&bytes, doc.as_ref()).map(Some)
    }

    fn read_doc(&mut self, collection: &str, id: &str) -> Result<Option<Document>> {
        let Some(sql) = self.existing_table(collection)? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&sql.select_doc)?;
        let text: Option<Option<String>> = stmt.query_row([id], |row| row.get(0)).optional()?;
        text.flatten().map(|t| parse_doc(&t)).transpose()
    }

    fn insert_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<bool> {
        let (doc, state, changed) = Self::row_params(row);
        let sql = self.table(collection)?;
        let inserted = self.conn.prepare_cached(&sql.insert)?.execute(params![id, doc, state, changed])?;
        Ok(inserted == 1)
    }

    fn write_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<()> {
        let (doc, state, changed) = Self::row_params(row);
        let sql = self.table(collection)?;
        self.conn.prepare_cached(&sql.upsert)?.execute(params![id, doc, state, changed])?;
        Ok(())
    }

    fn scan_docs(&mut self, collection: &str, visit: &mut dyn FnMut(&str, Document) -> bool) -> Result<()> {
        let Some(sql) = self.existing_table(collection)? else {
            return Ok(());
        };
        let mut stmt = self.conn.prepare_cached(&sql.scan)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let text: String = row.get(1)?;
            if !visit(&id, parse_doc(&text)?) {
                break;
            }
        }
        Ok(())
    }

    fn collection_names(&mut self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT name FROM collections ORDER BY name")?;
        let names = stmt.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    fn read_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut stmt = self.conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        Ok(stmt.query_row([key], |row| row.get(0)).optional()?)
    }

    fn write_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute(params![key, value])?;
        Ok(())
    }
}
