//! A view's row changes, for consumers that keep their own copy of the result.
//!
//! A view records each row whose output it changes as it changes it, so a commit that touches
//! three rows of a 10,000-row result costs three records — not a snapshot of the whole result
//! and a comparison with the last one. Records compose: a consumer that falls behind receives
//! the net change since what it last received, each entity once.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use serde_json::Value as Json;

use super::delivery::ResultChange;

/// Rows whose output changed, each with its output as the consumer last had it and as it is
/// now (`None`: not in the result), in the order they first changed.
#[derive(Debug, Default)]
pub(crate) struct Edits {
    edits: Vec<Edit>,
    /// Where each id's edit is in `edits`.
    at: HashMap<Arc<str>, usize>,
}

#[derive(Debug)]
struct Edit {
    id: Arc<str>,
    before: Option<Arc<Json>>,
    after: Option<Arc<Json>>,
}

impl Edits {
    pub(crate) fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Records that row `id` went from `before` to `after`; after an earlier record of the same
    /// row, the row goes from that record's `before`.
    pub(crate) fn record(&mut self, id: &Arc<str>, before: Option<Arc<Json>>, after: Option<Arc<Json>>) {
        match self.at.entry(id.clone()) {
            Entry::Occupied(at) => self.edits[*at.get()].after = after,
            Entry::Vacant(slot) => {
                slot.insert(self.edits.len());
                self.edits.push(Edit { id: id.clone(), before, after });
            }
        }
    }

    /// Composes `later` (which follows these edits) into these.
    pub(crate) fn extend(&mut self, later: Edits) {
        if self.is_empty() {
            *self = later;
            return;
        }
        for Edit { id, before, after } in later.edits {
            self.record(&id, before, after);
        }
    }

    /// The net change. Entities enter and change in the order their rows first changed; ids
    /// leave sorted, as [`ResultChange`] lists them everywhere.
    pub(crate) fn into_change(self) -> ResultChange {
        let mut change = ResultChange::default();
        for Edit { id, before, after } in self.edits {
            match (before, after) {
                (None, Some(entity)) => change.added.push(entity),
                (Some(_), None) => change.removed.push(id.to_string()),
                (Some(was), Some(entity)) if !Arc::ptr_eq(&was, &entity) && was != entity => {
                    change.updated.push(entity)
                }
                _ => {}
            }
        }
        change.removed.sort();
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::delivery::net_change;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    proptest! {
        /// Any sequence of row changes, recorded one by one or in batches composed later,
        /// comes to what comparing the first and last results by id gives.
        #[test]
        fn composed_edits_agree_with_comparing_the_results(
            first in proptest::collection::btree_map(0u8..16, 0u8..3, 0..12),
            steps in proptest::collection::vec((0u8..16, proptest::option::of(0u8..3)), 0..40),
            batch in 1usize..8,
        ) {
            let entity = |id: u8, v: u8| Arc::new(json!({"id": id, "v": v}));
            let mut rows: BTreeMap<u8, Arc<Json>> = first.iter().map(|(&id, &v)| (id, entity(id, v))).collect();
            let start = rows.clone();
            let mut composed = Edits::default();
            let mut pending = Edits::default();
            for (n, (id, version)) in steps.into_iter().enumerate() {
                let after = version.map(|v| entity(id, v));
                let before = match &after {
                    Some(after) => rows.insert(id, after.clone()),
                    None => rows.remove(&id),
                };
                pending.record(&Arc::from(id.to_string()), before, after);
                if n % batch == 0 {
                    composed.extend(std::mem::take(&mut pending));
                }
            }
            composed.extend(pending);
            let ids = |rows: &BTreeMap<u8, Arc<Json>>| -> Vec<(String, Arc<Json>)> {
                rows.iter().map(|(id, e)| (id.to_string(), e.clone())).collect()
            };
            let (old, new) = (ids(&start), ids(&rows));
            let mut expected = net_change(old.iter().map(|(id, e)| (&**id, e)), new.iter().map(|(id, e)| (&**id, e)));
            let mut got = composed.into_change();
            // Entities enter and change in the order their rows first changed; compare as sets.
            for change in [&mut expected, &mut got] {
                change.added.sort_by_key(|e| e["id"].as_u64());
                change.updated.sort_by_key(|e| e["id"].as_u64());
            }
            prop_assert_eq!(got, expected);
        }
    }
}
