//! # triplite
//!
//! An embedded, in-process database with sync, in the spirit of SQLite: a triple store on
//! SQLite with Triplit's data model (its JSON schema, its merge rules), usable from Rust and —
//! through a C ABI — from any language.
//!
//! ```
//! use serde_json::json;
//! use triplite::{Database, Schema};
//!
//! # fn main() -> triplite::Result<()> {
//! let schema = Schema::from_json(&json!({
//!     "collections": {
//!         "todos": {
//!             "schema": {"type": "record", "properties": {
//!                 "id":        {"type": "string", "config": {"default": {"func": "nanoid", "args": null}}},
//!                 "text":      {"type": "string"},
//!                 "completed": {"type": "boolean", "config": {"default": false}},
//!                 "tags":      {"type": "set", "items": {"type": "string"}, "config": {"default": {"func": "Set.empty", "args": null}}}
//!             }}
//!         }
//!     }
//! }))?;
//! let db = Database::builder().schema(schema).open_in_memory()?; // or .open("app.db")
//!
//! let todo = db.insert("todos", json!({"text": "buy milk", "tags": ["home"]}))?;
//! let id = todo["id"].as_str().unwrap();
//! db.update("todos", id, json!({"completed": true}))?;
//!
//! // Several writes, all or nothing.
//! db.transact(|tx| {
//!     tx.insert("todos", json!({"id": "t2", "text": "call mum"}))?;
//!     tx.delete("todos", id)
//! })?;
//!
//! assert_eq!(db.fetch_by_id("todos", "t2")?.unwrap()["completed"], json!(false));
//! assert!(db.fetch_by_id("todos", id)?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! Layers, bottom up: [`value`] (values and their order), [`store`] (triples, hybrid logical
//! clock, last-writer-wins merge, SQLite and memory backends), [`schema`] (Triplit's JSON
//! schema), and the [`Database`] API on top.

#![deny(unsafe_code)]

mod db;
mod error;
pub mod schema;
pub mod store;
pub mod value;

pub use db::{Database, DatabaseBuilder, Transaction};
pub use error::{Error, Result};
pub use schema::{Schema, SchemaChange};
pub use store::{Changes, Clock, Durability, Timestamp};
pub use value::{Date, Value};
