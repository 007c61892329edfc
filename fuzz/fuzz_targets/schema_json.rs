//! Schema JSON (`/override-schema`, `SCHEMA_RESPONSE`, `triplite_db_open` options).
#![no_main]

use libfuzzer_sys::fuzz_target;
use triplite::Schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(schema) = Schema::from_json_str(text) else { return };
    // What parses must serialize and parse back the same.
    assert_eq!(Schema::from_json(&schema.to_json()).expect("round trip"), schema);
});
