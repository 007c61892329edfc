//! Sync: Triplit 1.x's protocol ([`protocol`]) and a server engine ([`SyncServer`]) that
//! speaks it over any transport — frames in, frames out, the time passed in — plus its HTTP
//! API ([`http`]). The network layer (`crate::net`, feature `server`) only moves bytes.

mod connection;
pub mod http;
mod limits;
pub mod protocol;
mod server;

pub use limits::{Limits, SETTINGS as LIMIT_SETTINGS, Setting as LimitSetting};
pub use server::{ConnectRequest, Connection, SyncServer};
