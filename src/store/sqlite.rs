//! The SQLite backend (bundled SQLite through rusqlite, WAL journal).
//!
//! Layout: `meta(key, value)` for our own metadata (schema, clock), `collections(name, tbl)`
//! mapping each collection to its own table `c<N>` (collection names are case-sensitive, SQLite
//! identifiers are not, so names are never used as identifiers). A collection table holds one
//! row per entity: `id`, `doc` (the visible document as JSON text, NULL when deleted — what
//! queries read and what indexes are built on), `state` (the packed merge state) and `changed`
//! (the latest timestamp as sortable bytes). Our own layout evolves through numbered migrations
//! tracked in `PRAGMA user_version`.
//!
//! Secondary indexes are SQLite indexes over key columns of the collection table: one BLOB
//! column `k_<hex of the path>` per indexed attribute path, holding the value's byte key, whose
//! order is Triplit's (see [`crate::value::sort_key`]), so one index serves equality, ranges and
//! `order` exactly, which SQLite's own comparisons (type order, collation) would not. Keys are
//! computed in Rust from the document being written, which is already parsed: an expression
//! index would have SQLite extract each path from the JSON text again on every write. A new
//! index fills its columns once with `triplite_key(doc -> '$."path"')`, a function we register
//! on every connection that computes the same key from the stored text.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as Json;

use super::state::EntityState;
use super::{Access, Backend, IndexRange, Needle, RowWrite, SharedDoc};
use crate::error::{Error, Result};
use crate::query::lookup_path;
use crate::value::sort_key;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed transaction survives the process being
    /// killed at any moment; the last commits may be lost if the whole machine loses power.
    #[default]
    Normal,
    /// Every commit is on disk before it returns, surviving power loss: the write-ahead log
    /// is synced after each commit, one sync shared by the commits made while the previous
    /// one ran (group commit: concurrent writers do not queue behind each other's syncs).
    /// Readers and live queries may see a commit while its sync runs, before it returns; a
    /// power loss then can undo only what was never acknowledged.
    Full,
}

/// One step of our own table layout.
enum Migration {
    Sql(&'static str),
    Code(fn(&Connection) -> Result<()>),
}

/// Our own table layout, one step per entry; `user_version` counts the steps applied.
const MIGRATIONS: &[Migration] = &[
    // 1: metadata and the collection registry.
    Migration::Sql(
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE collections (name TEXT PRIMARY KEY NOT NULL, tbl TEXT NOT NULL UNIQUE) WITHOUT ROWID;",
    ),
    // 2: the registry of secondary indexes (columns as a JSON array of attribute paths).
    Migration::Sql(
        "CREATE TABLE indexes (name TEXT PRIMARY KEY NOT NULL, collection TEXT NOT NULL, columns TEXT NOT NULL) WITHOUT ROWID;",
    ),
    // 3: indexes over key columns instead of expressions over the document.
    Migration::Code(index_key_columns),
];

/// The SQL function that computes an index key from stored JSON; its name is part of our file
/// format (files of layout 2 have expression indexes calling it).
const KEY_FUNCTION: &str = "triplite_key";

/// The key column of an attribute path. SQLite identifiers are case-insensitive and paths are
/// not, so the path is spelt in hex.
fn key_column(path: &str) -> String {
    let mut column = String::with_capacity(2 + path.len() * 2);
    column.push_str("k_");
    for byte in path.bytes() {
        column.push_str(&format!("{byte:02x}"));
    }
    column
}

/// `triplite_key(doc -> '$."a"."b"')`: the key of a path computed from the stored text.
fn stored_key(path: &str) -> String {
    let json_path: String = path.split('.').map(|segment| format!(".\"{}\"", segment.replace('\'', "''"))).collect();
    format!("{KEY_FUNCTION}(doc -> '${json_path}')")
}

/// Creates index `name` on `table` over the key columns of `paths`, adding and filling the
/// columns it lacks.
fn create_key_index(conn: &Connection, table: &str, name: &str, paths: &[String]) -> Result<()> {
    for path in paths {
        let column = key_column(path);
        let exists: bool = conn
            .prepare_cached("SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2")?
            .query_row(params![table, column], |row| row.get(0))?;
        if !exists {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} BLOB;
                 UPDATE {table} SET {column} = {} WHERE doc IS NOT NULL;",
                stored_key(path)
            ))?;
        }
    }
    let columns: Vec<String> = paths.iter().map(|path| key_column(path)).collect();
    conn.execute_batch(&format!("CREATE INDEX {name} ON {table} ({}) WHERE doc IS NOT NULL", columns.join(", ")))?;
    Ok(())
}

/// Layout 3: every expression index of layout 2 rebuilt over key columns, under its name.
fn index_key_columns(conn: &Connection) -> Result<()> {
    let indexes: Vec<(String, String, String)> = conn
        .prepare("SELECT i.name, c.tbl, i.columns FROM indexes i JOIN collections c ON c.name = i.collection")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, table, columns) in indexes {
        let paths: Vec<String> =
            serde_json::from_str(&columns).map_err(|e| Error::Corrupt(format!("index registry: {e}")))?;
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
        create_key_index(conn, &table, &name, &paths)?;
    }
    Ok(())
}

/// SQL statements of one collection table, formatted once for the key columns its indexes use.
struct TableSql {
    table: String,
    /// The indexed attribute paths, split at dots, whose keys every write stores (parameters
    /// 5, 6, ...).
    key_paths: Vec<Vec<String>>,
    insert: String,
    upsert: String,
    select_state: String,
    select_doc: String,
    scan: String,
}

impl TableSql {
    fn new(table: &str, key_paths: Vec<String>) -> Self {
        let columns: String = key_paths.iter().map(|path| format!(", {}", key_column(path))).collect();
        let values: String = (0..key_paths.len()).map(|i| format!(", ?{}", i + 5)).collect();
        TableSql {
            table: table.to_owned(),
            insert: format!(
                "INSERT INTO {table} (id, doc, state, changed{columns}) VALUES (?1, ?2, ?3, ?4{values}) ON CONFLICT (id) DO NOTHING"
            ),
            upsert: format!(
                "INSERT OR REPLACE INTO {table} (id, doc, state, changed{columns}) VALUES (?1, ?2, ?3, ?4{values})"
            ),
            select_state: format!("SELECT state, doc FROM {table} WHERE id = ?1"),
            select_doc: format!("SELECT doc FROM {table} WHERE id = ?1"),
            scan: format!("SELECT id, doc FROM {table} WHERE doc IS NOT NULL ORDER BY id"),
            key_paths: key_paths.iter().map(|path| path.split('.').map(str::to_owned).collect()).collect(),
        }
    }
}

pub(crate) struct SqliteBackend {
    conn: Connection,
    /// Collection name → its table's statements; cleared on rollback, which may undo a CREATE.
    tables: RefCell<HashMap<String, Arc<TableSql>>>,
    /// Collection name → (columns, index name) of its secondary indexes.
    indexes: HashMap<String, Vec<(Vec<String>, String)>>,
    /// A reader's view of the file's layout (`PRAGMA schema_version` when it last loaded the
    /// registry): the writer may create tables and indexes meanwhile.
    layout_seen: Option<i64>,
}

impl SqliteBackend {
    /// Opens (creating if needed) a database file, with a page cache of `cache_mib` MiB.
    /// Commits write the log without syncing it (`synchronous=NORMAL`); with
    /// [`Durability::Full`] the database syncs it after each commit ([`super::GroupCommit`]).
    pub(crate) fn open(path: &Path, cache_mib: u32) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut backend = Self::configure(conn, cache_mib)?;
        backend.migrate()?;
        backend.load_indexes()?;
        Ok(backend)
    }

    /// A second connection to a file the writer has opened, for reads only: in WAL mode it
    /// reads a committed state while the writer commits, so queries need not wait for writes.
    pub(crate) fn open_reader(path: &Path, cache_mib: u32) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Self::configure(conn, cache_mib)
    }

    fn configure(conn: Connection, cache_mib: u32) -> Result<Self> {
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The page cache (SQLite's default is 2 MiB; ours 32 MiB): large transactions otherwise
        // spill pages to the WAL before they commit. Pages are allocated only as they are used.
        conn.pragma_update(None, "cache_size", -i64::from(cache_mib) * 1024)?;
        // Read pages through a memory map (up to 256 MiB of the file, as Triplit's SQLite
        // adapter does): scans then read pages in place instead of copying them.
        conn.pragma_update(None, "mmap_size", 268_435_456)?;
        // Another process (or a second handle) holding the write lock: wait rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(128);
        register_key_function(&conn)?;
        Ok(SqliteBackend { conn, tables: RefCell::new(HashMap::new()), indexes: HashMap::new(), layout_seen: None })
    }

    fn load_indexes(&mut self) -> Result<()> {
        let mut stmt = self.conn.prepare("SELECT collection, columns, name FROM indexes ORDER BY name")?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))?;
        let mut indexes: HashMap<String, Vec<(Vec<String>, String)>> = HashMap::new();
        for row in rows {
            let (collection, columns, name) = row?;
            let columns: Vec<String> =
                serde_json::from_str(&columns).map_err(|e| Error::Corrupt(format!("index registry: {e}")))?;
            indexes.entry(collection).or_default().push((columns, name));
        }
        drop(stmt);
        self.indexes = indexes;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let version: usize = self.conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::Corrupt(format!(
                "database layout version {version} is newer than this build of triplite understands ({})",
                MIGRATIONS.len()
            )));
        }
        for (step, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            match migration {
                Migration::Sql(sql) => tx.execute_batch(sql)?,
                Migration::Code(run) => run(&tx)?,
            }
            tx.pragma_update(None, "user_version", (step + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The statements for a collection's table, if the table exists.
    fn existing_table(&self, collection: &str) -> Result<Option<Arc<TableSql>>> {
        if !self.tables.borrow().contains_key(collection) {
            let table: Option<String> = self
                .conn
                .prepare_cached("SELECT tbl FROM collections WHERE name = ?1")?
                .query_row([collection], |row| row.get(0))
                .optional()?;
            let Some(table) = table else { return Ok(None) };
            let sql = TableSql::new(&table, self.key_paths(collection));
            self.tables.borrow_mut().insert(collection.to_owned(), Arc::new(sql));
        }
        Ok(self.tables.borrow().get(collection).cloned())
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
            let sql = Arc::new(TableSql::new(&table, self.key_paths(collection)));
            self.tables.borrow_mut().insert(collection.to_owned(), sql.clone());
            Ok(sql)
        }
    }

    /// The attribute paths a collection's indexes use, each once, in a fixed order.
    fn key_paths(&self, collection: &str) -> Vec<String> {
        let mut paths: Vec<String> = self
            .indexes
            .get(collection)
            .into_iter()
            .flatten()
            .flat_map(|(columns, _)| columns.iter().cloned())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Writes a row with `statement` (the table's insert or upsert): its columns, then the key
    /// of each indexed path, computed from the document (none for a deleted entity).
    fn execute_write(&self, sql: &TableSql, statement: &str, id: &str, row: &RowWrite) -> Result<usize> {
        let doc = row.doc.map(SharedDoc::to_text).transpose()?;
        let mut stmt = self.conn.prepare_cached(statement)?;
        stmt.raw_bind_parameter(1, id)?;
        stmt.raw_bind_parameter(2, doc)?;
        stmt.raw_bind_parameter(3, row.state.to_bytes())?;
        stmt.raw_bind_parameter(4, row.changed.sort_key())?;
        for (i, path) in sql.key_paths.iter().enumerate() {
            stmt.raw_bind_parameter(i + 5, row.doc.map(|d| sort_key(lookup_path(d, path))))?;
        }
        Ok(stmt.raw_execute()?)
    }

    /// The SQL reading one index range. Keys are written into the SQL as blob literals rather
    /// than bound: SQLite recompiles a statement whenever a bound value could change its plan,
    /// which would cost more than the query; with literals, a repeated query reuses its cached
    /// compiled statement.
    fn index_query(&self, collection: &str, sql: &TableSql, range: &IndexRange) -> Result<String> {
        let name = self
            .indexes
            .get(collection)
            .and_then(|list| list.iter().find(|(columns, _)| *columns == range.columns))
            .map(|(_, name)| name.clone())
            .ok_or_else(|| Error::Corrupt(format!("no index on {collection}({})", range.columns.join(", "))))?;
        let expressions: Vec<String> = range.columns.iter().map(|c| key_column(c)).collect();
        let mut conditions = vec!["doc IS NOT NULL".to_owned()];
        for (expression, key) in expressions.iter().zip(&range.equal) {
            conditions.push(format!("{expression} = {}", blob_literal(key)));
        }
        let next = &expressions[range.equal.len().min(expressions.len() - 1)];
        for (bound, less) in [(&range.lower, false), (&range.upper, true)] {
            if let Some((key, inclusive)) = bound {
                let op = match (less, inclusive) {
                    (false, true) => ">=",
                    (false, false) => ">",
                    (true, true) => "<=",
                    (true, false) => "<",
                };
                conditions.push(format!("{next} {op} {}", blob_literal(key)));
            }
        }
        let direction = if range.descending { "DESC" } else { "ASC" };
        let order: Vec<String> = expressions[range.equal.len()..]
            .iter()
            .map(|e| format!("{e} {direction}"))
            .chain([format!("id {direction}")])
            .collect();
        Ok(format!(
            "SELECT id, doc FROM {} INDEXED BY {name} WHERE {} ORDER BY {}",
            sql.table,
            conditions.join(" AND "),
            order.join(", ")
        ))
    }
}

/// Registers `triplite_key(json)`: the order-preserving key of a JSON fragment (`doc -> path`
/// yields the value's JSON text, or NULL when the path is missing).
fn register_key_function(conn: &Connection) -> Result<()> {
    conn.create_scalar_function(
        KEY_FUNCTION,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let key = match ctx.get_raw(0) {
                ValueRef::Null => sort_key(None),
                ValueRef::Text(text) => {
                    let json: Json =
                        serde_json::from_slice(text).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
                    sort_key(Some(&json))
                }
                ValueRef::Integer(i) => sort_key(Some(&Json::from(i))),
                ValueRef::Real(f) => {
                    sort_key(Some(&serde_json::Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null)))
                }
                ValueRef::Blob(_) => {
                    return Err(rusqlite::Error::UserFunctionError("triplite_key takes JSON text".into()));
                }
            };
            Ok(ToSqlOutput::Owned(SqlValue::Blob(key)))
        },
    )?;
    Ok(())
}

fn blob_literal(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut literal = String::with_capacity(bytes.len() * 2 + 3);
    literal.push_str("x'");
    for byte in bytes {
        literal.push(HEX[usize::from(byte >> 4)] as char);
        literal.push(HEX[usize::from(byte & 15)] as char);
    }
    literal.push('\'');
    literal
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
        self.tables.borrow_mut().clear();
        // A rolled-back transaction may have created or dropped indexes.
        if let Err(e) = self.load_indexes() {
            tracing::error!(error = %e, "reloading the index registry after a rollback failed");
            self.indexes.clear();
        }
    }

    fn begin_read(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN")?;
        // The first statement fixes the snapshot; the registry is reloaded from that same
        // snapshot whenever the layout changed since the last read.
        let layout = self.conn.pragma_query_value(None, "schema_version", |row| row.get::<_, i64>(0));
        let fresh = layout.map_err(Error::from).and_then(|layout| {
            if self.layout_seen != Some(layout) {
                self.tables.borrow_mut().clear();
                self.load_indexes()?;
                self.layout_seen = Some(layout);
            }
            Ok(())
        });
        if fresh.is_err() {
            self.end_read();
        }
        fresh
    }

    fn end_read(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("COMMIT");
        }
    }

    fn read_state(&self, collection: &str, id: &str) -> Result<Option<EntityState>> {
        let Some(sql) = self.existing_table(collection)? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&sql.select_state)?;
        let row: Option<(Vec<u8>, Option<String>)> =
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
        let Some((bytes, doc)) = row else { return Ok(None) };
        let doc = doc.map(|text| SharedDoc::parse(text.as_bytes())).transpose()?;
        EntityState::from_bytes(&bytes, doc.as_deref()).map(Some)
    }

    fn read_doc(&self, collection: &str, id: &str) -> Result<Option<SharedDoc>> {
        let Some(sql) = self.existing_table(collection)? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&sql.select_doc)?;
        let text: Option<Option<String>> = stmt.query_row([id], |row| row.get(0)).optional()?;
        text.flatten().map(|t| SharedDoc::parse(t.as_bytes())).transpose()
    }

    fn insert_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<bool> {
        let sql = self.table(collection)?;
        Ok(self.execute_write(&sql, &sql.insert, id, row)? == 1)
    }

    fn write_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<()> {
        let sql = self.table(collection)?;
        self.execute_write(&sql, &sql.upsert, id, row)?;
        Ok(())
    }

    fn scan(
        &self,
        collection: &str,
        access: &Access,
        needles: &[Needle],
        visit: &mut dyn FnMut(&str, &SharedDoc) -> Result<bool>,
    ) -> Result<usize> {
        let Some(sql) = self.existing_table(collection)? else { return Ok(0) };
        let query = match access {
            Access::Scan => sql.scan.clone(),
            Access::Ids(ids) => {
                let mut read = 0;
                for id in ids {
                    if let Some(doc) = self.read_doc(collection, id)? {
                        read += 1;
                        if !visit(id, &doc)? {
                            break;
                        }
                    }
                }
                return Ok(read);
            }
            Access::Index(range) => self.index_query(collection, &sql, range)?,
        };
        let mut stmt = self.conn.prepare_cached(&query)?;
        let mut rows = stmt.query([])?;
        let mut read = 0;
        while let Some(row) = rows.next()? {
            read += 1;
            let ValueRef::Text(text) = row.get_ref(1)? else { continue };
            if !needles.iter().all(|n| n.found_in(text)) {
                continue;
            }
            let doc = SharedDoc::parse(text)?;
            let id: String = row.get(0)?;
            if !visit(&id, &doc)? {
                break;
            }
        }
        Ok(read)
    }

    fn indexes(&self, collection: &str) -> Vec<Vec<String>> {
        self.indexes
            .get(collection)
            .map(|list| list.iter().map(|(columns, _)| columns.clone()).collect())
            .unwrap_or_default()
    }

    fn set_indexes(&mut self, collection: &str, wanted: &[Vec<String>]) -> Result<()> {
        let table = self.table(collection)?.table.clone();
        let existing = self.indexes.get(collection).cloned().unwrap_or_default();
        for (columns, name) in &existing {
            if !wanted.contains(columns) {
                self.conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
                self.conn.execute("DELETE FROM indexes WHERE name = ?1", [name])?;
            }
        }
        // Key columns no wanted index uses go (they would otherwise go stale).
        for path in self.key_paths(collection) {
            if !wanted.iter().flatten().any(|p| *p == path) {
                self.conn.execute_batch(&format!("ALTER TABLE {table} DROP COLUMN {}", key_column(&path)))?;
            }
        }
        for columns in wanted {
            if existing.iter().any(|(c, _)| c == columns) {
                continue;
            }
            let next: i64 =
                self.conn
                    .query_row("SELECT COUNT(*) FROM indexes WHERE collection = ?1", [collection], |row| row.get(0))?;
            let name = format!("{table}_ix{next}_{}", columns.join("_").replace('.', "__"));
            create_key_index(&self.conn, &table, &name, columns)?;
            let columns_json = serde_json::to_string(columns).expect("paths serialize");
            self.conn.execute(
                "INSERT INTO indexes (name, collection, columns) VALUES (?1, ?2, ?3)",
                params![name, collection, columns_json],
            )?;
        }
        // The table's statements name its key columns, which may have changed.
        self.tables.borrow_mut().remove(collection);
        self.load_indexes()
    }

    fn collection_names(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT name FROM collections ORDER BY name")?;
        let names = stmt.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut stmt = self.conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        Ok(stmt.query_row([key], |row| row.get(0)).optional()?)
    }

    fn write_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute(params![key, value])?;
        Ok(())
    }

    fn delete_meta(&mut self, key: &str) -> Result<()> {
        self.conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?.execute([key])?;
        Ok(())
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        // `substr` rather than LIKE: a prefix may hold `%` or `_`. The range lets the primary
        // key serve the scan.
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value FROM meta WHERE key >= ?1 AND substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([prefix], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
