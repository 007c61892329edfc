//! Tokens: verification must fail cleanly on anything but a well-signed token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triplite::Database;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let db = Database::builder().jwt_secret("fuzz-secret").open_in_memory().expect("an in-memory database");
    assert!(db.verify_token(token).is_err(), "a random input verified");
});
