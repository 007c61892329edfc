//! HTTP bodies for every route, with a service token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triplite::sync::http::Request;
use triplite::sync::{Limits, SyncServer};
use triplite::{Database, DevTokenKind, mint_dev_token};

const ROUTES: [&str; 12] = [
    "/fetch",
    "/insert",
    "/bulk-insert",
    "/update",
    "/delete",
    "/delete-all",
    "/schema",
    "/override-schema",
    "/apply-changes",
    "/clear",
    "/stats",
    "/update-token",
];

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else { return };
    let db = Database::builder().jwt_secret("fuzz-secret").open_in_memory().expect("an in-memory database");
    let server = SyncServer::new(db, Limits::default());
    let bearer = format!("Bearer {}", mint_dev_token("fuzz-secret", DevTokenKind::Secret, "fuzz").expect("a token"));
    let request = Request {
        method: "POST",
        path: ROUTES[route as usize % ROUTES.len()],
        authorization: Some(&bearer),
        body,
        ..Request::default()
    };
    let response = server.handle_http(&request);
    assert!(response.status < 500, "a 5xx for {request:?}: {response:?}");
});
