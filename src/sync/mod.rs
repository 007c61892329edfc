//! Sync: Triplit 1.x's protocol ([`protocol`]) and a server engine ([`SyncServer`]) that
//! speaks it over any transport — frames in, frames out, the time passed in — plus its HTTP
//! API ([`http`]). The network layer (`crate::net`, feature `server`) only moves bytes.

mod connection;
pub mod http;
pub mod protocol;
mod server;

pub use server::{ConnectRequest, Connection, Limits, SyncServer};
