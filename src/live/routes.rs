//! Which views a write can affect. Views are filed under every collection they read; a view
//! whose root filters pin an attribute to a value (`conversation = "c7"`) is filed under that
//! value, so a write to the root collection reaches only the views whose value the entity had
//! before or has after — the cost of a write stays flat as subscriptions on one collection grow.

use std::collections::{BTreeSet, HashMap};

use super::view::{Change, Dependencies};
use crate::query::lookup_path;
use crate::value::sort_key;

pub(crate) type ViewId = u64;

#[derive(Default)]
pub(crate) struct Routes {
    collections: HashMap<String, CollectionRoutes>,
}

#[derive(Default)]
struct CollectionRoutes {
    /// Views any write to the collection may affect.
    any: BTreeSet<ViewId>,
    /// Views that only writes with a given value at a path can affect: path → value key → views.
    by_value: HashMap<Vec<String>, HashMap<Vec<u8>, BTreeSet<ViewId>>>,
}

/// Where a view is filed.
enum Slot<'d> {
    Any(&'d str),
    Value { collection: &'d str, path: &'d [String], key: &'d [u8] },
}

fn slots(deps: &Dependencies) -> Vec<Slot<'_>> {
    let mut slots: Vec<Slot> =
        deps.read_collections.iter().filter(|c| **c != deps.root).map(|c| Slot::Any(c.as_str())).collect();
    // A view that reads its own collection through a subquery must see every write to it.
    match deps.equalities.first() {
        Some((path, key)) if !deps.read_collections.contains(&deps.root) => {
            slots.push(Slot::Value { collection: &deps.root, path, key })
        }
        _ => slots.push(Slot::Any(&deps.root)),
    }
    slots
}

impl Routes {
    pub(crate) fn add(&mut self, id: ViewId, deps: &Dependencies) {
        for slot in slots(deps) {
            match slot {
                Slot::Any(collection) => {
                    self.collections.entry(collection.to_owned()).or_default().any.insert(id);
                }
                Slot::Value { collection, path, key } => {
                    let routes = self.collections.entry(collection.to_owned()).or_default();
                    routes.by_value.entry(path.to_vec()).or_default().entry(key.to_vec()).or_default().insert(id);
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, id: ViewId, deps: &Dependencies) {
        for slot in slots(deps) {
            let (collection, emptied) = match slot {
                Slot::Any(collection) => {
                    let Some(routes) = self.collections.get_mut(collection) else { continue };
                    routes.any.remove(&id);
                    (collection, routes.any.is_empty() && routes.by_value.is_empty())
                }
                Slot::Value { collection, path, key } => {
                    let Some(routes) = self.collections.get_mut(collection) else { continue };
                    if let Some(values) = routes.by_value.get_mut(path) {
                        if let Some(views) = values.get_mut(key) {
                            views.remove(&id);
                            if views.is_empty() {
                                values.remove(key);
                            }
                        }
                        if values.is_empty() {
                            routes.by_value.remove(path);
                        }
                    }
                    (collection, routes.any.is_empty() && routes.by_value.is_empty())
                }
            };
            if emptied {
                self.collections.remove(collection);
            }
        }
    }

    /// Adds to `out` the views `change` may affect.
    pub(crate) fn candidates(&self, change: &Change, out: &mut BTreeSet<ViewId>) {
        let Some(routes) = self.collections.get(&change.collection) else { return };
        out.extend(&routes.any);
        for (path, values) in &routes.by_value {
            for doc in [&change.before, &change.after].into_iter().flatten() {
                if let Some(views) = values.get(&sort_key(lookup_path(doc, path))) {
                    out.extend(views);
                }
            }
        }
    }
}
