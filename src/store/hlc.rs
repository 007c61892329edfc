//! Hybrid logical clock: `[physical ms, logical, client id]`, as Triplit's `SyncTimestamp`.
//!
//! The physical part follows the wall clock; the logical part breaks ties within one
//! millisecond and keeps the clock monotonic when the wall clock stalls or steps back. Merging
//! a remote timestamp (`observe`) keeps every later local timestamp above it.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};

/// A point in the hybrid logical clock's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Wall-clock milliseconds since the Unix epoch.
    pub physical: u64,
    /// Counter within one millisecond.
    pub logical: u32,
    /// The writer's id; the final tie-break.
    pub client: String,
}

impl Timestamp {
    pub fn new(physical: u64, logical: u32, client: impl Into<String>) -> Self {
        Timestamp { physical, logical, client: client.into() }
    }

    /// The JSON form Triplit uses on the wire: `[physical, logical, client]`.
    pub fn to_json(&self) -> Json {
        json!([self.physical, self.logical, self.client])
    }

    /// Parses `[physical, logical, client]`.
    pub fn from_json(json: &Json) -> Result<Self> {
        let parts = json.as_array().filter(|p| p.len() == 3);
        let parsed = parts
            .and_then(|p| Some(Timestamp::new(p[0].as_u64()?, u32::try_from(p[1].as_u64()?).ok()?, p[2].as_str()?)));
        parsed.ok_or_else(|| Error::invalid_json("timestamp", "expected [physical ms, logical, client id]"))
    }

    /// Bytes whose `memcmp` order is the timestamp order, for SQLite columns and indexes.
    pub fn sort_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(12 + self.client.len());
        key.extend_from_slice(&self.physical.to_be_bytes());
        key.extend_from_slice(&self.logical.to_be_bytes());
        key.extend_from_slice(self.client.as_bytes());
        key
    }

    /// The inverse of [`Timestamp::sort_key`].
    pub fn from_sort_key(key: &[u8]) -> Result<Self> {
        if key.len() < 12 {
            return Err(Error::Corrupt("timestamp key shorter than 12 bytes".into()));
        }
        let physical = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
        let logical = u32::from_be_bytes(key[8..12].try_into().expect("4 bytes"));
        let client =
            std::str::from_utf8(&key[12..]).map_err(|_| Error::Corrupt("timestamp client id is not UTF-8".into()))?;
        Ok(Timestamp::new(physical, logical, client))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.physical, self.logical, &self.client).cmp(&(other.physical, other.logical, &other.client))
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{},{},{}]", self.physical, self.logical, self.client)
    }
}

/// The wall-clock source of a [`HybridClock`]; replaceable so tests can control time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// Issues strictly increasing timestamps for one writer.
pub struct HybridClock {
    client: String,
    source: Arc<dyn Clock>,
    last: Mutex<(u64, u32)>,
}

impl HybridClock {
    pub fn new(client: impl Into<String>, source: Arc<dyn Clock>) -> Self {
        HybridClock { client: client.into(), source, last: Mutex::new((0, 0)) }
    }

    /// This writer's id.
    pub fn client_id(&self) -> &str {
        &self.client
    }

    /// The next timestamp, greater than every one issued or observed before.
    pub fn next(&self) -> Timestamp {
        let wall = self.source.now_millis();
        let mut last = self.last.lock();
        *last = if wall > last.0 { (wall, 0) } else { (last.0, last.1 + 1) };
        Timestamp::new(last.0, last.1, self.client.clone())
    }

    /// The newest timestamp issued or observed, without issuing one.
    pub fn current(&self) -> Timestamp {
        let last = self.last.lock();
        Timestamp::new(last.0, last.1, self.client.clone())
    }

    /// Moves the clock past a timestamp seen elsewhere (a merged change, a reopened file).
    pub fn observe(&self, seen: &Timestamp) {
        let mut last = self.last.lock();
        if (seen.physical, seen.logical) > *last {
            *last = (seen.physical, seen.logical);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Frozen(u64);
    impl Clock for Frozen {
        fn now_millis(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn stalled_wall_clock_still_gives_increasing_timestamps() {
        let clock = HybridClock::new("a", Arc::new(Frozen(100)));
        let (t1, t2) = (clock.next(), clock.next());
        assert!(t2 > t1);
        clock.observe(&Timestamp::new(500, 7, "b"));
        let t3 = clock.next();
        assert_eq!((t3.physical, t3.logical), (500, 8));
    }

    #[test]
    fn sort_keys_order_like_timestamps() {
        let a = Timestamp::new(1, 2, "z");
        let b = Timestamp::new(1, 3, "a");
        assert!(a.sort_key() < b.sort_key());
        assert_eq!(Timestamp::from_sort_key(&b.sort_key()).unwrap(), b);
        assert_eq!(Timestamp::from_json(&b.to_json()).unwrap(), b);
    }
}
