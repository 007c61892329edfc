//! Triplit's HTTP API, free of I/O: a request's method, path, headers and body in, a status
//! and body out. Bad input gets a typed 4xx where Triplit answers 500 or silently succeeds;
//! `docs/compatibility.md` lists each difference.

use serde_json::{Map, Value as Json, json};

use super::SyncServer;
use super::protocol::{WireError, decode_changes};
use crate::db::Session;
use crate::error::Error;
use crate::query::Query;
use crate::schema::Schema;

/// One HTTP request, as the transport read it.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The raw query string (`noReturn=true`), if any.
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// An answer: JSON, or Triplit's plain-text `OK` / version.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Json),
    Text(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Body,
}

impl Response {
    fn json(status: u16, body: Json) -> Self {
        Response { status, body: Body::Json(body) }
    }

    fn ok(body: Json) -> Self {
        Response::json(200, body)
    }

    fn error(error: &WireError) -> Self {
        Response::json(error.status, error.to_json())
    }
}

impl From<Error> for Response {
    fn from(error: Error) -> Self {
        Response::error(&WireError::from(&error))
    }
}

/// The collection where Triplit keeps the schema (as the entity `_schema`).
const METADATA: &str = "_metadata";

impl SyncServer {
    /// Answers one HTTP request of Triplit's API.
    pub fn handle_http(&self, request: &Request) -> Response {
        let response = self.answer(request);
        if response.status >= 400 {
            let error = match &response.body {
                Body::Json(json) => json["name"].as_str().unwrap_or("").to_owned(),
                Body::Text(_) => String::new(),
            };
            let (method, route, status) = (request.method, request.path, response.status);
            if status >= 500 {
                tracing::error!(method, route, status, error, "request failed");
            } else {
                tracing::info!(method, route, status, error, "request refused");
            }
        }
        response
    }

    fn answer(&self, request: &Request) -> Response {
        match (request.method, request.path) {
            ("GET", "/healthcheck") => return Response { status: 200, body: Body::Text("OK") },
            ("GET" | "POST", _) => {}
            _ => return route_not_found(request.path),
        }
        let session = match self.authenticate(request.authorization) {
            Ok(session) => session,
            Err(response) => return response,
        };
        if request.method == "GET" {
            return match request.path {
                "/version" => Response { status: 200, body: Body::Text("1.0.0") },
                path => route_not_found(path),
            };
        }
        if request.body.len() > self.limits().max_message_bytes {
            let megabytes = self.limits().max_message_bytes / (1024 * 1024);
            return Response::error(&WireError::new(
                "TriplitError",
                format!("Body too large, max size is {megabytes} MB"),
                413,
            ));
        }
        let route = request.path.trim_start_matches('/');
        let body = match parse_body(request, route) {
            Ok(body) => body,
            Err(response) => return response,
        };
        let no_return = request.query.split('&').any(|pair| pair == "noReturn=true");
        let answer = match route {
            "fetch" => self.fetch(&session, &body),
            "insert" => insert(&session, &body),
            "bulk-insert" | "bulk-insert-file" => bulk_insert(&session, &body, no_return),
            "update" => update(&session, &body),
            "delete" => delete(&session, &body),
            "update-token" => self.update_token_route(&session, &body),
            "delete-all" | "schema" | "override-schema" | "apply-changes" | "clear" | "stats" | "webhooks-get"
            | "webhooks-push" | "webhooks-clear" => {
                if !session.is_service() {
                    return Response::error(&WireError::new("ServiceKeyRequiredError", "Service token required.", 401));
                }
                self.admin(route, &session, &body)
            }
            _ => return route_not_found(request.path),
        };
        answer.unwrap_or_else(Response::from)
    }

    /// `Authorization: Bearer <token>`, verified.
    fn authenticate(&self, header: Option<&str>) -> Result<Session, Response> {
        let Some(header) = header else {
            let error = WireError::new("NoTokenProvidedError", "No token provided.", 401)
                .with_context("Missing authorization header");
            return Err(Response::error(&error));
        };
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if scheme != "Bearer" {
            let error =
                WireError::new("InvalidAuthenticationSchemeError", "Must use Bearer authentication scheme.", 401);
            return Err(Response::error(&error));
        }
        if token.is_empty() {
            let error = WireError::new("NoTokenProvidedError", "No token provided.", 401)
                .with_context("Missing authorization token");
            return Err(Response::error(&error));
        }
        self.session(token).map_err(Response::from)
    }

    fn fetch(&self, session: &Session, body: &Map<String, Json>) -> crate::Result<Response> {
        let query = Query::from_json(field(body, "query")?)?;
        if query.collection == METADATA && session.is_service() {
            return Ok(Response::ok(Json::Array(self.metadata(&query)?)));
        }
        Ok(Response::ok(Json::Array(session.fetch(&query)?)))
    }

    /// Triplit's `_metadata` collection, read-only: the schema as the row `_schema`
    /// (`{id, collections, roles}`), for service tokens. The query runs over that row as over
    /// any schemaless collection.
    fn metadata(&self, query: &Query) -> crate::Result<Vec<Json>> {
        // `_metadata` is no name for a collection of ours (a leading `_`): it is read as `metadata`.
        const HELD_AS: &str = "metadata";
        let rows = crate::Database::in_memory()?;
        if let Some(schema) = self.database().schema() {
            let mut row = schema.to_json();
            row["id"] = json!("_schema");
            rows.insert(HELD_AS, row)?;
        }
        rows.fetch(&Query { collection: HELD_AS.to_owned(), ..query.clone() })
    }

    fn update_token_route(&self, session: &Session, body: &Map<String, Json>) -> crate::Result<Response> {
        let client_id = string(body, "clientId")?;
        Ok(match self.update_token(client_id, session) {
            Ok(()) => Response { status: 200, body: Body::Text("OK") },
            Err(error) => Response::error(&error),
        })
    }

    /// The service-token routes.
    fn admin(&self, route: &str, session: &Session, body: &Map<String, Json>) -> crate::Result<Response> {
        let db = self.database();
        Ok(match route {
            "schema" => match body.get("format").and_then(Json::as_str).unwrap_or("json") {
                "json" => Response::ok(match db.schema() {
                    Some(schema) => json!({"type": "schema", "schema": schema.to_json()}),
                    None => json!({"type": "schemaless"}),
                }),
                _ => Response::error(&WireError::triplit("Invalid format").with_status(400)),
            },
            "override-schema" => {
                let mut schema = field(body, "schema")?.clone();
                if schema.get("collections").is_some() && schema.get("roles").is_none() {
                    schema["roles"] = Json::Object(crate::permissions::default_roles());
                }
                let schema = Schema::from_json(&schema)?;
                // Triplit answers 200 with the change either way; `successful` tells.
                let change = match db.set_schema(schema) {
                    Ok(change) => change,
                    Err(Error::IncompatibleSchema(change)) => *change,
                    Err(e) => return Err(e),
                };
                Response::ok(serde_json::to_value(change).expect("schema changes serialize"))
            }
            "apply-changes" => {
                let changes = decode_changes(field(body, "changes")?.clone())?;
                session.commit_changes(&changes)?;
                Response::ok(json!({}))
            }
            "delete-all" => {
                let collection = string(body, "collectionName")?;
                delete_all(session, &[collection.to_owned()])?;
                Response::ok(json!({}))
            }
            // Everything stored goes, also collections the schema no longer has; `full` takes
            // the schema too. The answer is empty, as Triplit's.
            "clear" => {
                match body.get("full").and_then(Json::as_bool) {
                    Some(true) => db.clear_with_schema()?,
                    _ => db.clear()?,
                }
                Response { status: 200, body: Body::Text("") }
            }
            "stats" => {
                let mut stats = Vec::new();
                for collection in db.collection_names()? {
                    let count = db.fetch_all(&collection)?.len();
                    if count > 0 {
                        stats.push(json!({"collection": collection, "numEntities": count}));
                    }
                }
                Response::ok(Json::Array(stats))
            }
            // Webhooks are disabled in Triplit 1.x; its routes answer `{}`.
            _ => Response::ok(json!({})),
        })
    }
}

fn route_not_found(path: &str) -> Response {
    let base = format!("The server does not have a handler for this request: {path}");
    Response::error(&WireError::new("RouteNotFoundError", base, 404))
}

fn parse_body(request: &Request, route: &str) -> Result<Map<String, Json>, Response> {
    let bad = |message: String| Response::from(Error::invalid_json("request body", message));
    let json: Json = if route == "bulk-insert-file" {
        let text = multipart_field(request, "data")
            .ok_or_else(|| Response::error(&WireError::triplit("No data provided for file upload").with_status(400)))?;
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else if request.body.iter().all(u8::is_ascii_whitespace) {
        Json::Object(Map::new())
    } else {
        serde_json::from_slice(request.body).map_err(|e| bad(e.to_string()))?
    };
    match json {
        Json::Object(map) => Ok(map),
        other => Err(bad(format!("expected a JSON object, found {}", crate::schema::describe_json(&other)))),
    }
}

/// A field of a `multipart/form-data` body.
fn multipart_field(request: &Request, name: &str) -> Option<String> {
    let boundary = request.content_type?.split("boundary=").nth(1)?.trim_matches('"');
    let body = std::str::from_utf8(request.body).ok()?;
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str()).find_map(|part| {
        let (headers, content) = part.split_once("\r\n\r\n")?;
        let wanted = format!("name=\"{name}\"");
        headers.contains(&wanted).then(|| content.trim_end_matches("\r\n").to_owned())
    })
}

fn field<'b>(body: &'b Map<String, Json>, key: &str) -> crate::Result<&'b Json> {
    body.get(key).ok_or_else(|| Error::invalid_json("request body", format!("'{key}' is missing")))
}

fn string<'b>(body: &'b Map<String, Json>, key: &str) -> crate::Result<&'b str> {
    field(body, key)?.as_str().ok_or_else(|| Error::invalid_json("request body", format!("'{key}' must be a string")))
}

fn insert(session: &Session, body: &Map<String, Json>) -> crate::Result<Response> {
    let collection = string(body, "collectionName")?;
    let entity = field(body, "entity")?.clone();
    Ok(Response::ok(session.insert(collection, entity)?))
}

fn bulk_insert(session: &Session, body: &Map<String, Json>, no_return: bool) -> crate::Result<Response> {
    let output = session.transact(|tx| {
        let mut output = Map::new();
        for (collection, entities) in body {
            let entities = entities.as_array().ok_or_else(|| {
                Error::invalid_json("request body", format!("'{collection}' must be an array of entities"))
            })?;
            let mut inserted = Vec::with_capacity(entities.len());
            for entity in entities {
                inserted.push(tx.insert(collection, entity.clone())?);
            }
            output.insert(collection.clone(), Json::Array(inserted));
        }
        Ok(output)
    })?;
    Ok(Response::ok(if no_return { json!({}) } else { Json::Object(output) }))
}

/// `changes` is an encoded partial (sets as `{item: bool}` or an array of items to add, dates
/// as ISO strings), applied as a client's `CHANGES` update would be — but to an entity that
/// must exist, and never to its id.
fn update(session: &Session, body: &Map<String, Json>) -> crate::Result<Response> {
    let collection = string(body, "collectionName")?;
    let id = string(body, "entityId")?;
    let Json::Object(patch) = field(body, "changes")? else {
        return Err(Error::invalid_json("request body", "'changes' must be an object"));
    };
    if let Some(new_id) = patch.get("id") {
        return Err(Error::InvalidOperation(format!(
            "Attempted to update the id of an entity in the {collection} to {new_id}. The 'id' attribute of an entity is immutable and cannot be updated."
        )));
    }
    let mut patch = patch.clone();
    if let Some(schema) = session.database().schema() {
        schema.collection(collection)?.set_arrays_as_additions(collection, &mut patch)?;
    }
    session.transact(|tx| tx.patch_existing(collection, id, patch))?;
    Ok(Response::ok(json!({})))
}

fn delete(session: &Session, body: &Map<String, Json>) -> crate::Result<Response> {
    session.delete(string(body, "collectionName")?, string(body, "entityId")?)?;
    Ok(Response::ok(json!({})))
}

fn delete_all(session: &Session, collections: &[String]) -> crate::Result<()> {
    session.transact(|tx| {
        for collection in collections {
            for entity in tx.fetch_all(collection)? {
                if let Some(id) = entity.get("id").and_then(Json::as_str) {
                    tx.delete(collection, id)?;
                }
            }
        }
        Ok(())
    })
}
