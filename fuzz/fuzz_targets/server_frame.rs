//! A frame from a server, as a client receives it: any text. What parses writes out and parses
//! back to the same message (the client relies on `to_frame` for its own tests and logs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use triplite::sync::protocol::ServerMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = std::str::from_utf8(data) else { return };
    if let Ok(message) = ServerMessage::parse(frame) {
        let again = ServerMessage::parse(&message.to_frame()).expect("a written message parses");
        assert_eq!(again, message);
    }
});
