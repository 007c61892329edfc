//! Transactions: the unit of atomicity. Every write of the public API runs in one.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::permissions::{Operation, Principal};
use crate::query::{Executor, Explain, Query, Rules, Variables, prepare};
use crate::schema::{Collection, Schema, describe_json};
use crate::store::{Access, Changes, Document, HybridClock, SetKind, SharedDoc, Store, Timestamp};

/// A set of writes that commit together or not at all; see [`crate::Database::transact`].
///
/// Reads through a transaction see its own writes. Each write is stamped with its own clock
/// tick, so later writes in a transaction win over earlier ones to the same attribute.
pub struct Transaction<'a> {
    pub(super) store: &'a mut Store,
    pub(super) schema: Option<Arc<Schema>>,
    pub(super) clock: &'a HybridClock,
    /// The newest timestamp this transaction wrote, persisted at commit so a reopened database
    /// never issues a timestamp twice.
    pub(super) latest: Option<Timestamp>,
    /// The session whose rules apply, if any.
    pub(super) access: Option<Arc<Principal>>,
    /// Entities written, with their state before the transaction: for the commit-time checks
    /// of a session, and for live queries when any are open (`capture`).
    pub(super) touched: Vec<Touched>,
    pub(super) capture: bool,
    /// The ids in `touched`, per collection.
    pub(super) touched_keys: HashMap<String, HashSet<String>>,
}

/// One entity a transaction wrote, with its document before the transaction.
pub(crate) struct Touched {
    pub collection: String,
    pub id: String,
    pub before: Option<SharedDoc>,
}

/// One entity a transaction wrote: its stored (encoded) document before and after (`None`:
/// absent or deleted).
pub(crate) struct Written {
    pub collection: String,
    pub id: String,
    pub before: Option<SharedDoc>,
    pub after: Option<SharedDoc>,
}

/// How documents of one collection are encoded: by its schema, or schemaless.
enum Shape<'s> {
    Typed(&'s Collection),
    Schemaless,
}

fn shape<'s>(schema: &'s Option<Arc<Schema>>, collection: &str) -> Result<Shape<'s>> {
    crate::schema::check_collection_name(collection).map_err(|_| Error::UnknownCollection(collection.to_owned()))?;
    match schema {
        Some(schema) => Ok(Shape::Typed(schema.collection(collection)?)),
        None => Ok(Shape::Schemaless),
    }
}

impl<'a> Transaction<'a> {
    pub(super) fn new(
        store: &'a mut Store,
        schema: Option<Arc<Schema>>,
        clock: &'a HybridClock,
        access: Option<Arc<Principal>>,
    ) -> Self {
        Transaction {
            store,
            schema,
            clock,
            latest: None,
            access,
            touched: Vec::new(),
            capture: false,
            touched_keys: HashMap::new(),
        }
    }

    /// The schema in force, cloned out so the store can be borrowed while it is used.
    fn schema(&self) -> Option<Arc<Schema>> {
        self.schema.clone()
    }

    pub(crate) fn tick(&mut self) -> Timestamp {
        let ts = self.clock.next();
        self.latest = Some(ts.clone());
        ts
    }

    /// Inserts a document (API form) and returns the stored entity (API form, with defaults
    /// and a generated id where none was given). Inserting an existing id merges into it, as
    /// Triplit does.
    pub fn insert(&mut self, collection: &str, doc: Json) -> Result<Json> {
        let schema = self.schema();
        let shape = shape(&schema, collection)?;
        let fields = as_object(collection, &doc)?;
        let encoded = match &shape {
            Shape::Typed(def) => def.encode_insert(collection, fields)?,
            Shape::Schemaless => schemaless_insert(collection, fields)?,
        };
        let id = encoded["id"].as_str().expect("encoding guarantees a string id").to_owned();
        let result = to_api(&shape, &encoded);
        self.remember(collection, &id)?;
        let ts = self.tick();
        self.store.apply_set(collection, &id, &SharedDoc::new(encoded), &ts, SetKind::Insert)?;
        Ok(Json::Object(result))
    }

    /// Applies a partial patch (API form) to an existing entity. Setting an optional attribute
    /// to `null` deletes it; records merge key by key; a set given as an array replaces the set.
    pub fn update(&mut self, collection: &str, id: &str, patch: Json) -> Result<()> {
        let schema = self.schema();
        let shape = shape(&schema, collection)?;
        let fields = as_object(collection, &patch)?;
        let missing = || Error::NotFound { collection: collection.to_owned(), id: id.to_owned() };
        let current = self.store.backend().read_doc(collection, id)?.ok_or_else(missing)?;
        if self.hidden_from(collection, id, &current, Operation::Update)? {
            return Err(missing());
        }
        if let Some(new_id) = fields.get("id") {
            if new_id.as_str() != Some(id) {
                return Err(Error::TypeMismatch {
                    collection: collection.to_owned(),
                    attribute: "id".into(),
                    expected: format!("the entity's own id \"{id}\" (ids cannot change)"),
                    found: describe_json(new_id),
                });
            }
        }
        let encoded = match &shape {
            Shape::Typed(def) => def.encode_patch(collection, &current, fields)?,
            Shape::Schemaless => fields.clone(),
        };
        self.remember(collection, id)?;
        let ts = self.tick();
        self.store.apply_set(collection, id, &SharedDoc::new(encoded), &ts, SetKind::Update)
    }

    /// Deletes an entity; deleting one that does not exist does nothing.
    pub fn delete(&mut self, collection: &str, id: &str) -> Result<()> {
        shape(&self.schema, collection)?;
        match self.store.backend().read_doc(collection, id)? {
            None => return Ok(()),
            Some(current) if self.hidden_from(collection, id, &current, Operation::Delete)? => return Ok(()),
            Some(_) => {}
        }
        self.remember(collection, id)?;
        let ts = self.tick();
        self.store.apply_delete(collection, id, &ts)
    }

    /// Deletes every entity the store holds, in every collection — also those the schema no
    /// longer declares (Triplit's `/clear`). Runs without rules: for the database itself.
    pub(crate) fn delete_every_entity(&mut self) -> Result<()> {
        for collection in self.store.backend().collection_names()? {
            let mut ids = Vec::new();
            self.store.backend().scan(&collection, &Access::Scan, &[], &mut |id, _| {
                ids.push(id.to_owned());
                Ok(true)
            })?;
            for id in ids {
                self.remember(&collection, &id)?;
                let ts = self.tick();
                self.store.apply_delete(&collection, &id, &ts)?;
            }
        }
        Ok(())
    }

    /// The entity with this id (API form), or `None` (also when the session may not read it).
    pub fn fetch_by_id(&mut self, collection: &str, id: &str) -> Result<Option<Json>> {
        if self.rules_apply() {
            return Ok(self.fetch(&Query::new(collection).filter("id", "=", id))?.into_iter().next());
        }
        let schema = self.schema();
        let shape = shape(&schema, collection)?;
        let doc = self.store.backend().read_doc(collection, id)?;
        Ok(doc.map(|d| Json::Object(to_api(&shape, &d))))
    }

    /// Every entity of a collection (API form) the session may read, in id order.
    pub fn fetch_all(&mut self, collection: &str) -> Result<Vec<Json>> {
        if self.rules_apply() {
            return self.fetch(&Query::new(collection));
        }
        let schema = self.schema();
        let shape = shape(&schema, collection)?;
        let mut out = Vec::new();
        self.store.backend().scan(collection, &Access::Scan, &[], &mut |_, doc| {
            out.push(Json::Object(to_api(&shape, doc)));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Runs a query (seeing this transaction's writes); results in API form.
    pub fn fetch(&mut self, query: &Query) -> Result<Vec<Json>> {
        self.fetch_with(query, &Variables::new())
    }

    /// Runs a query with variables (`$global`, `$session`, `$role`, …).
    pub fn fetch_with(&mut self, query: &Query, vars: &Variables) -> Result<Vec<Json>> {
        let schema = self.schema();
        let prepared = self.prepare_read(query, vars)?;
        self.reader(schema.as_deref()).fetch(&prepared)
    }

    /// Runs a query and reports the access path the planner chose and the rows it read.
    pub fn explain(&mut self, query: &Query) -> Result<Explain> {
        let schema = self.schema();
        let prepared = self.prepare_read(query, &Variables::new())?;
        self.reader(schema.as_deref()).explain(&prepared)
    }

    /// An executor for this transaction's reads, bounded by the session's query limits.
    fn reader<'s>(&'s mut self, schema: Option<&'s Schema>) -> Executor<'s> {
        let limits = self.access.as_ref().and_then(|a| a.limits);
        Executor::new(self.store.backend(), schema).metered(limits)
    }

    /// Records every entity this transaction writes from now on with its document before it
    /// (see [`Transaction::written`]): the sync client turns them into its outbox entry.
    pub(crate) fn record_writes(&mut self) {
        self.capture = true;
    }

    /// Each entity written since [`Transaction::record_writes`], with its stored (encoded)
    /// document before the transaction and now.
    pub(crate) fn written(&mut self) -> Result<Vec<Written>> {
        let mut written = Vec::with_capacity(self.touched.len());
        for touched in &self.touched {
            let after = self.store.backend().read_doc(&touched.collection, &touched.id)?;
            written.push(Written {
                collection: touched.collection.clone(),
                id: touched.id.clone(),
                before: touched.before.clone(),
                after,
            });
        }
        Ok(written)
    }

    /// An entity's stored (encoded) document, without rules.
    pub(crate) fn read_encoded(&mut self, collection: &str, id: &str) -> Result<Option<SharedDoc>> {
        self.store.backend().read_doc(collection, id)
    }

    /// The database's own metadata, written in this transaction (the sync client's outbox and
    /// checkpoints live there, so they commit or roll back with the writes they describe).
    pub(crate) fn write_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.store.backend().write_meta(key, value)
    }

    pub(crate) fn delete_meta(&mut self, key: &str) -> Result<()> {
        self.store.backend().delete_meta(key)
    }

    pub(crate) fn read_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.store.backend().read_meta(key)
    }

    pub(crate) fn scan_meta(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.store.backend().scan_meta(prefix)
    }

    /// Whether a session's rules govern this transaction.
    fn rules_apply(&self) -> bool {
        self.access.as_ref().is_some_and(|a| !a.bypass)
    }

    fn prepare_read(&self, query: &Query, vars: &Variables) -> Result<crate::query::Prepared> {
        prepare_read(query, self.schema.as_deref(), self.access.as_deref(), vars)
    }

    /// Records an entity's state before this transaction first writes it, when a session's
    /// rules or live queries will need it.
    fn remember(&mut self, collection: &str, id: &str) -> Result<()> {
        if self.first_touch(collection, id) {
            let before = self.store.backend().read_doc(collection, id)?;
            self.touched.push(Touched { collection: collection.to_owned(), id: id.to_owned(), before });
        }
        Ok(())
    }

    /// [`Transaction::remember`] of an entity whose document the caller just read.
    fn remember_read(&mut self, collection: &str, id: &str, current: &Option<SharedDoc>) {
        if self.first_touch(collection, id) {
            self.touched.push(Touched {
                collection: collection.to_owned(),
                id: id.to_owned(),
                before: current.clone(),
            });
        }
    }

    /// Whether the entity is to be remembered now: rules or live queries need it, and this
    /// transaction has not written it before.
    fn first_touch(&mut self, collection: &str, id: &str) -> bool {
        if !self.remembers() {
            return false;
        }
        let ids = match self.touched_keys.get_mut(collection) {
            Some(ids) => ids,
            None => self.touched_keys.entry(collection.to_owned()).or_default(),
        };
        !ids.contains(id) && ids.insert(id.to_owned())
    }

    /// Whether written entities are remembered at all: a session's rules or live queries
    /// need their state before the transaction.
    fn remembers(&self) -> bool {
        self.capture || self.rules_apply()
    }

    /// Makes room to remember `count` more entities of a collection at once (a batch of
    /// 100,000 would otherwise grow the lists many times over).
    fn expect_touches(&mut self, collection: &str, count: usize) {
        if self.remembers() {
            self.touched.reserve(count);
            self.touched_keys.entry(collection.to_owned()).or_default().reserve(count);
        }
    }

    /// Checks every write against the session's rules, after all of them are staged (so a rule
    /// can see rows inserted in the same transaction): insert on the new entity; update on the
    /// old one, then postUpdate on the new one with `$prev`; delete on the old one.
    pub(super) fn check_writes(&mut self) -> Result<()> {
        let Some(access) = self.access.clone().filter(|a| !a.bypass) else { return Ok(()) };
        let schema = self.schema();
        let touched_list = std::mem::take(&mut self.touched);
        // A rule without `$prev` is the same for every entity: prepared once per collection
        // and operation, not per write (a transaction of 10,000 inserts checks one rule).
        let mut rules: HashMap<(String, Operation), crate::query::Prepared> = HashMap::new();
        for touched in &touched_list {
            let after = self.store.backend().read_doc(&touched.collection, &touched.id)?;
            let checks: Vec<(Operation, &Document, Option<&Document>)> = match (&touched.before, &after) {
                (None, Some(new)) => vec![(Operation::Insert, new, None)],
                (Some(old), Some(new)) => vec![(Operation::Update, old, None), (Operation::PostUpdate, new, Some(old))],
                (Some(old), None) => vec![(Operation::Delete, old, None)],
                (None, None) => Vec::new(),
            };
            for (operation, entity, prev) in checks {
                let allowed = match prev {
                    Some(_) => self.allows(&access, schema.as_deref(), &touched.collection, operation, entity, prev)?,
                    None => {
                        let key = (touched.collection.clone(), operation);
                        if !rules.contains_key(&key) {
                            let rule = self.rule(&access, schema.as_deref(), &touched.collection, operation, None)?;
                            rules.insert(key.clone(), rule);
                        }
                        Executor::new(self.store.backend(), schema.as_deref()).satisfies(&rules[&key], entity)?
                    }
                };
                if !allowed {
                    return Err(Error::WritePermission {
                        collection: touched.collection.clone(),
                        id: touched.id.clone(),
                        operation,
                        roles: access.roles.iter().map(|r| r.name.clone()).collect(),
                    });
                }
            }
        }
        self.touched = touched_list;
        Ok(())
    }

    /// Whether `access`'s rule for `operation` on `collection` holds for `entity` (`prev`: the
    /// entity before an update, as `$prev`).
    fn allows(
        &mut self,
        access: &Principal,
        schema: Option<&Schema>,
        collection: &str,
        operation: Operation,
        entity: &Document,
        prev: Option<&Document>,
    ) -> Result<bool> {
        let rule = self.rule(access, schema, collection, operation, prev)?;
        Executor::new(self.store.backend(), schema).satisfies(&rule, entity)
    }

    /// `access`'s rule for `operation` on `collection`, prepared (`prev`: `$prev`).
    fn rule(
        &self,
        access: &Principal,
        schema: Option<&Schema>,
        collection: &str,
        operation: Operation,
        prev: Option<&Document>,
    ) -> Result<crate::query::Prepared> {
        let mut vars = session_vars(Some(access), &Variables::new());
        if let Some(prev) = prev {
            vars = vars.with_scope("$prev", Json::Object(prev.clone()));
        }
        prepare(&Query::new(collection), schema, &vars, Some(Rules { roles: &access.roles, operation }))
    }

    /// Whether the existing entity `current` is, to this session, missing for a write of
    /// `operation`: it may not read it, and its rule for the operation denies it. Such a write
    /// is answered as one of a missing entity, so a denial never tells which ids exist. (A
    /// write its own rule allows goes ahead, readable or not: each operation has its rule.)
    fn hidden_from(&mut self, collection: &str, id: &str, current: &Document, operation: Operation) -> Result<bool> {
        let Some(access) = self.access.clone().filter(|a| !a.bypass) else { return Ok(false) };
        if !self.fetch(&Query::new(collection).filter("id", "=", id))?.is_empty() {
            return Ok(false);
        }
        let schema = self.schema();
        Ok(!self.allows(&access, schema.as_deref(), collection, operation, current, None)?)
    }

    /// Merges an encoded partial into an entity that must exist (HTTP `/update`): one that is
    /// missing, or hidden from the session and not updatable by it, is [`Error::NotFound`].
    pub(crate) fn patch_existing(&mut self, collection: &str, id: &str, patch: Map<String, Json>) -> Result<()> {
        let missing = || Error::NotFound { collection: collection.to_owned(), id: id.to_owned() };
        let current = self.store.backend().read_doc(collection, id)?.ok_or_else(missing)?;
        if self.hidden_from(collection, id, &current, Operation::Update)? {
            return Err(missing());
        }
        let mut changes = Changes::default();
        changes.set(collection, id, patch);
        self.commit_changes(changes).map(drop)
    }

    /// Stamps changes (encoded form) with one tick of the database's clock and merges them —
    /// what a server does with a client's writes, which carry no timestamps. Changes given by
    /// value move into the store instead of being copied.
    pub fn commit_changes<'c>(&mut self, changes: impl Into<Cow<'c, Changes>>) -> Result<Timestamp> {
        let ts = self.tick();
        self.apply_changes(changes, &ts)?;
        Ok(ts)
    }

    /// Merges changes stamped elsewhere (encoded form), as sync does: deletes first, then sets;
    /// a set with an `id` inserts or merges, one without updates — and is dropped when the
    /// entity does not exist, so one stale change never blocks a batch. Changes given by value
    /// move into the store instead of being copied.
    pub fn apply_changes<'c>(&mut self, changes: impl Into<Cow<'c, Changes>>, ts: &Timestamp) -> Result<()> {
        let changes = changes.into().into_owned();
        let schema = self.schema();
        for (collection, batch) in changes.collections {
            let collection = &collection;
            let shape = shape(&schema, collection)?;
            if let Shape::Typed(def) = &shape {
                for fields in batch.sets.values() {
                    def.validate_encoded(collection, fields)?;
                }
            }
            // A delete or update of an entity hidden from the session whose rule denies it is
            // dropped, as one of a missing entity is (see `hidden_from`).
            let mut hidden = HashSet::new();
            for (id, operation) in batch.deletes.iter().map(|id| (id, Operation::Delete)).chain(
                batch
                    .sets
                    .iter()
                    .filter(|(_, fields)| !fields.contains_key("id"))
                    .map(|(id, _)| (id, Operation::Update)),
            ) {
                if let Some(current) = self.store.backend().read_doc(collection, id)? {
                    if self.hidden_from(collection, id, &current, operation)? {
                        hidden.insert(id.clone());
                    }
                }
            }
            self.expect_touches(collection, batch.deletes.len() + batch.sets.len());
            // Each entity is remembered as it was before the batch: a deleted one before its
            // delete, the others as read just before their set (which nothing touched earlier).
            for id in batch.deletes.iter().filter(|id| !hidden.contains(*id)) {
                self.remember(collection, id)?;
            }
            for id in batch.deletes.iter().filter(|id| !hidden.contains(*id)) {
                self.store.apply_delete(collection, id, ts)?;
            }
            for (id, fields) in batch.sets.into_iter().filter(|(id, _)| !hidden.contains(id)) {
                let kind = match fields.get("id") {
                    Some(Json::String(own)) if *own == id => SetKind::Insert,
                    Some(other) => {
                        return Err(Error::TypeMismatch {
                            collection: collection.clone(),
                            attribute: "id".into(),
                            expected: format!("the id the change is filed under (\"{id}\")"),
                            found: describe_json(other),
                        });
                    }
                    None => SetKind::Update,
                };
                // What lands must fit the schema whole, as through `insert` and `update`: an
                // insert that creates the entity is complete, and a patch that creates a record
                // brings all of it. (An update of a missing entity is dropped by the merge.)
                let current = self.store.backend().read_doc(collection, &id)?;
                self.remember_read(collection, &id, &current);
                let complete = match (&shape, current) {
                    (Shape::Schemaless, _) => fields,
                    (Shape::Typed(def), Some(current)) => def.complete_encoded_patch(collection, &current, &fields)?,
                    (Shape::Typed(def), None) if kind == SetKind::Insert => def.complete_encoded(collection, fields)?,
                    (Shape::Typed(_), None) => fields,
                };
                self.store.apply_set(collection, &id, &SharedDoc::new(complete), ts, kind)?;
            }
        }
        self.clock.observe(ts);
        Ok(())
    }
}

/// The session's claims as `$session`/`$token`, unless the caller set them.
fn session_vars(access: Option<&Principal>, vars: &Variables) -> Variables {
    match access {
        Some(access) if vars.scope("$session").is_none() => {
            vars.clone().with_scope("$session", Json::Object(access.claims.clone()))
        }
        _ => vars.clone(),
    }
}

/// Prepares a read for `access` (none: the database itself): its read rules folded in unless
/// it bypasses them, its claims as `$session`.
pub(crate) fn prepare_read(
    query: &Query,
    schema: Option<&Schema>,
    access: Option<&Principal>,
    vars: &Variables,
) -> Result<crate::query::Prepared> {
    if let Some(limits) = access.and_then(|a| a.limits) {
        limits.check_shape(query)?;
    }
    let rules = access.filter(|a| !a.bypass).map(|a| Rules { roles: &a.roles, operation: Operation::Read });
    prepare(query, schema, &session_vars(access, vars), rules)
}

fn as_object<'j>(collection: &str, doc: &'j Json) -> Result<&'j Map<String, Json>> {
    doc.as_object().ok_or_else(|| Error::TypeMismatch {
        collection: collection.to_owned(),
        attribute: String::new(),
        expected: "a document (JSON object)".into(),
        found: describe_json(doc),
    })
}

fn schemaless_insert(collection: &str, fields: &Map<String, Json>) -> Result<Document> {
    let mut encoded = fields.clone();
    match encoded.get("id") {
        None | Some(Json::Null) => {
            encoded.insert("id".into(), Json::String(crate::schema::nanoid()));
        }
        Some(Json::String(_)) => {}
        Some(other) => {
            return Err(Error::TypeMismatch {
                collection: collection.to_owned(),
                attribute: "id".into(),
                expected: "string".into(),
                found: describe_json(other),
            });
        }
    }
    Ok(encoded)
}

fn to_api(shape: &Shape, doc: &Document) -> Map<String, Json> {
    match shape {
        Shape::Typed(def) => def.document_to_api(doc),
        Shape::Schemaless => doc.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}
