//! The sync client's options and fetch options as a C caller passes them (JSON from an app):
//! any JSON is parsed into options or refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triplite::client::{ClientOptions, FetchPolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = ClientOptions::from_json(&json);
    let _ = FetchPolicy::from_json(&json);
});
