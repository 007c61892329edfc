//! Stored documents, shared instead of copied: a transaction's before and after images, a
//! query's rows, a live view's rows and the results it delivers can all be one allocation
//! (each read from a backend parses its own). An initial sync moves 100,000 documents through every one of
//! those; copying each at every step was most of its time.

use std::ops::Deref;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};

/// The deepest nesting of arrays and objects serde_json parses (its recursion limit, 128,
/// counts the level that fails).
const MAX_NESTING: usize = 127;

/// Whether `value` nests at most `levels` arrays and objects deep.
fn nested_within(value: &Json, levels: usize) -> bool {
    match value {
        Json::Array(items) => levels > 0 && items.iter().all(|v| nested_within(v, levels - 1)),
        Json::Object(map) => levels > 0 && map.values().all(|v| nested_within(v, levels - 1)),
        _ => true,
    }
}

/// An encoded entity document.
pub(crate) type Document = Map<String, Json>;

/// A document behind an `Arc`, held as the JSON object it is (so results and sync frames
/// share it as `Arc<Json>` too). Always an object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SharedDoc(Arc<Json>);

impl SharedDoc {
    pub(crate) fn new(doc: Document) -> Self {
        SharedDoc(Arc::new(Json::Object(doc)))
    }

    /// The document as shared JSON.
    pub(crate) fn as_json(&self) -> &Arc<Json> {
        &self.0
    }

    /// The document as compact JSON text: how both backends store it. A five-attribute
    /// document takes ~120 bytes so, and ~900 parsed (serde_json's map node alone is ~640).
    /// Refused when nested deeper than [`SharedDoc::parse`] reads back: stored, it could never
    /// be read again.
    pub(crate) fn to_text(&self) -> Result<String> {
        if !nested_within(&self.0, MAX_NESTING) {
            return Err(Error::invalid_json("document", format!("nested deeper than {MAX_NESTING} levels")));
        }
        Ok(serde_json::to_string(&*self.0).expect("documents always serialize"))
    }

    /// Reads a stored document (see [`SharedDoc::to_text`]).
    pub(crate) fn parse(text: &[u8]) -> Result<Self> {
        let doc: Document =
            serde_json::from_slice(text).map_err(|e| Error::Corrupt(format!("stored document: {e}")))?;
        Ok(SharedDoc::new(doc))
    }

    /// The document to change or keep, copied only when something else still shares it.
    pub(crate) fn into_doc(self) -> Document {
        match Arc::unwrap_or_clone(self.0) {
            Json::Object(doc) => doc,
            _ => unreachable!("a shared document is an object"),
        }
    }
}

impl Deref for SharedDoc {
    type Target = Document;

    fn deref(&self) -> &Document {
        match &*self.0 {
            Json::Object(doc) => doc,
            _ => unreachable!("a shared document is an object"),
        }
    }
}

impl From<Document> for SharedDoc {
    fn from(doc: Document) -> Self {
        SharedDoc::new(doc)
    }
}
