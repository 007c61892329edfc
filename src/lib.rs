#![doc = include_str!("../README.md")]
//!
//! ## Layers
//!
//! Bottom up: [`value`] (values and their order), [`store`] (triples, hybrid logical
//! clock, last-writer-wins merge, SQLite and memory backends), [`schema`] (Triplit's JSON
//! schema), and the [`Database`] API on top.

#![deny(unsafe_code)]

pub mod auth;
#[cfg(feature = "client")]
pub mod client;
mod db;
mod error;
pub mod ffi;
pub mod live;
#[cfg(feature = "server")]
pub mod net;
pub mod permissions;
pub mod query;
pub mod schema;
pub mod store;
pub mod sync;
pub mod value;

pub use auth::{AuthConfig, DevTokenKind, VerifiedToken, install_token_crypto, mint_dev_token};
pub use db::{Database, DatabaseBuilder, Session, Transaction};
pub use error::{Error, Result};
pub use live::{LiveResult, ResultChange, Subscription};
pub use query::{Direction, Explain, Filter, Query, QueryLimits, Variables};
pub use schema::{Schema, SchemaChange};
pub use store::{Changes, Clock, Durability, Timestamp};
pub use value::{Date, Value};
