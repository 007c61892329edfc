//! Permissions: the todo/owner scenario, postUpdate, roles OR-ed, relations and `exists` in
//! rules, bypass and open collections, and a "no leak" property test.

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use triplite::{Database, DevTokenKind, Error, Query, Schema, mint_dev_token};

const SECRET: &str = "permission-tests-secret";

fn schema(post_update: bool) -> Schema {
    let owner_rule = json!({"filter": [["owner", "=", "$role.userId"]]});
    let mut todo_rules =
        json!({"user": {"read": owner_rule, "insert": owner_rule, "update": owner_rule, "delete": owner_rule}});
    if post_update {
        todo_rules["user"]["postUpdate"] = owner_rule.clone();
    }
    todo_rules["admin"] = json!({"read": {"filter": [true]}, "delete": {"filter": [true]}});
    Schema::from_json(&json!({
        "roles": {"user": {"match": {"sub": "$userId"}}, "admin": {"match": {"role": "admin"}}},
        "collections": {
            "todos": {
                "schema": {"type": "record", "properties": {
                    "id": {"type": "string"}, "text": {"type": "string"}, "owner": {"type": "string"},
                    "project_id": {"type": "string", "config": {"optional": true}}, "n": {"type": "number", "config": {"optional": true}}}},
                "relationships": {"project": {"query": {"collectionName": "projects", "where": [["id", "=", "$1.project_id"]]}, "cardinality": "one"}},
                "permissions": todo_rules
            },
            "projects": {
                "schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "owner": {"type": "string"}}},
                "relationships": {"todos": {"query": {"collectionName": "todos", "where": [["project_id", "=", "$1.id"]]}, "cardinality": "many"}},
                // A project is readable by its owner, or by anyone owning a todo in it.
                "permissions": {"user": {
                    "read": {"filter": [{"mod": "or", "filters": [["owner", "=", "$role.userId"], {"exists": {"_extends": "todos"}}]}]},
                    "insert": {"filter": [["owner", "=", "$role.userId"]]}
                }}
            },
            "notes": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "body": {"type": "string"}}}}
        }
    }))
    .unwrap()
}

fn open(post_update: bool) -> Database {
    Database::builder().schema(schema(post_update)).jwt_secret(SECRET).open_in_memory().unwrap()
}

fn seed(db: &Database) {
    db.transact(|tx| {
        tx.insert("projects", json!({"id": "pa", "name": "A's project", "owner": "alice"}))?;
        tx.insert("projects", json!({"id": "pb", "name": "B's project", "owner": "bob"}))?;
        tx.insert("todos", json!({"id": "a1", "text": "alice one", "owner": "alice", "project_id": "pa", "n": 1}))?;
        tx.insert("todos", json!({"id": "a2", "text": "alice two", "owner": "alice", "project_id": "pb", "n": 2}))?;
        tx.insert("todos", json!({"id": "b1", "text": "bob one", "owner": "bob", "project_id": "pb", "n": 3}))?;
        tx.insert("notes", json!({"id": "x", "body": "open to all"}))?;
        Ok(())
    })
    .unwrap();
}

fn ids(rows: &[Json]) -> Vec<&str> {
    rows.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

fn denied<T: std::fmt::Debug>(result: Result<T, Error>) -> Error {
    match result {
        Err(e @ Error::WritePermission { .. }) => e,
        other => panic!("expected WritePermissionError, got {other:?}"),
    }
}

/// A denied write to a row the session cannot read is answered as one to a missing row.
fn as_missing<T: std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, as for a missing row, got {other:?}"),
    }
}

#[test]
fn users_read_and_write_only_their_own_todos() {
    let db = open(true);
    seed(&db);
    let alice = db.session_from_claims(json!({"sub": "alice"})).unwrap();
    let bob = db.session_from_claims(json!({"sub": "bob"})).unwrap();
    assert_eq!(ids(&alice.fetch(&Query::new("todos")).unwrap()), vec!["a1", "a2"]);
    assert_eq!(ids(&bob.fetch(&Query::new("todos")).unwrap()), vec!["b1"]);
    assert!(bob.fetch_by_id("todos", "a1").unwrap().is_none(), "B cannot read A's row");

    alice.update("todos", "a1", json!({"text": "edited"})).unwrap();
    // Bob cannot read a1: his denied writes to it are answered as to a missing row.
    as_missing(bob.update("todos", "a1", json!({"text": "hacked"})));
    as_missing(bob.update("todos", "nope", json!({"text": "hacked"})));
    bob.delete("todos", "a1").unwrap();
    bob.delete("todos", "nope").unwrap();
    let e = denied(alice.update("todos", "a1", json!({"owner": "bob"})));
    assert!(e.to_string().contains("postUpdate of todos/a1") && e.to_string().contains("user"), "{e}");
    denied(alice.insert("todos", json!({"id": "a3", "text": "for bob", "owner": "bob"})));
    assert_eq!(db.fetch_by_id("todos", "a1").unwrap().unwrap()["text"], json!("edited"));
    assert!(db.fetch_by_id("todos", "a3").unwrap().is_none());
    alice.delete("todos", "a2").unwrap();
    assert!(db.fetch_by_id("todos", "a2").unwrap().is_none());
}

#[test]
fn post_update_keeps_owners_from_giving_rows_away() {
    let db = open(true);
    seed(&db);
    let alice = db.session_from_claims(json!({"sub": "alice"})).unwrap();
    denied(alice.update("todos", "a1", json!({"owner": "bob"})));
    assert_eq!(db.fetch_by_id("todos", "a1").unwrap().unwrap()["owner"], json!("alice"));

    // Without a postUpdate rule, updates are checked only against the old row.
    let lax = open(false);
    seed(&lax);
    let alice = lax.session_from_claims(json!({"sub": "alice"})).unwrap();
    alice.update("todos", "a1", json!({"text": "fine"})).unwrap();
    alice.update("todos", "a1", json!({"owner": "bob"})).unwrap();
    assert_eq!(lax.fetch_by_id("todos", "a1").unwrap().unwrap()["owner"], json!("bob"));
}

#[test]
fn a_denied_write_leaves_nothing_of_its_transaction() {
    let db = open(true);
    seed(&db);
    let alice = db.session_from_claims(json!({"sub": "alice"})).unwrap();
    let result = alice.transact(|tx| {
        tx.insert("todos", json!({"id": "a9", "text": "mine", "owner": "alice"}))?;
        tx.update("todos", "a1", json!({"text": "changed"}))?;
        tx.update("todos", "a2", json!({"owner": "bob"}))?; // denied at commit
        Ok(())
    });
    denied(result);
    assert!(db.fetch_by_id("todos", "a9").unwrap().is_none());
    assert_eq!(db.fetch_by_id("todos", "a1").unwrap().unwrap()["text"], json!("alice one"));
    // A project and a todo in it, created together.
    alice
        .transact(|tx| {
            tx.insert("projects", json!({"id": "pn", "name": "new", "owner": "alice"}))?;
            tx.insert("todos", json!({"id": "a8", "text": "in new", "owner": "alice", "project_id": "pn"}))
        })
        .unwrap();
}

#[test]
fn rules_through_relations_and_exists() {
    let db = open(true);
    seed(&db);
    let alice = db.session_from_claims(json!({"sub": "alice"})).unwrap();
    // pb is bob's, but alice owns a todo in it: readable through the exists rule.
    assert_eq!(ids(&alice.fetch(&Query::new("projects")).unwrap()), vec!["pa", "pb"]);
    let carol = db.session_from_claims(json!({"sub": "carol"})).unwrap();
    assert!(carol.fetch(&Query::new("projects")).unwrap().is_empty());
    // Includes are read through the related collection's rules.
    let with_todos = alice.fetch(&Query::new("projects").filter("id", "=", "pb").include("todos")).unwrap();
    assert_eq!(ids(with_todos[0]["todos"].as_array().unwrap()), vec!["a2"], "bob's todo in pb stays hidden");
    // Relation paths and exists cannot probe hidden rows.
    assert!(alice.fetch(&Query::new("projects").filter("todos.text", "=", "bob one")).unwrap().is_empty());
    let probe = Query::from_json(&json!({"collectionName": "projects", "where": [{"exists": {"collectionName": "todos", "where": [["owner", "=", "bob"]]}}]})).unwrap();
    assert!(alice.fetch(&probe).unwrap().is_empty());
    // Ordering by a related field does not reveal hidden projects (they read as missing).
    let ordered = alice.fetch(&Query::new("todos").order("project.name", triplite::Direction::Desc)).unwrap();
    assert_eq!(ids(&ordered), vec!["a2", "a1"]);
}

#[test]
fn roles_or_bypass_open_collections_and_missing_claims() {
    let db = open(true);
    seed(&db);
    // Several roles: the rules of each are OR-ed.
    let both = db.session_from_claims(json!({"sub": "alice", "role": "admin"})).unwrap();
    assert_eq!(both.roles().len(), 2);
    assert_eq!(ids(&both.fetch(&Query::new("todos")).unwrap()), vec!["a1", "a2", "b1"]);
    both.delete("todos", "b1").unwrap(); // admin may delete
    // A service token bypasses rules; claims merely saying "secret" do not.
    let service = db.session(&mint_dev_token(SECRET, DevTokenKind::Secret, "p").unwrap()).unwrap();
    assert!(service.bypasses_rules());
    assert_eq!(service.fetch(&Query::new("todos")).unwrap().len(), 2);
    let pretender = db.session_from_claims(json!({"x-triplit-token-type": "secret"})).unwrap();
    assert!(pretender.fetch(&Query::new("todos")).unwrap().is_empty());
    // A collection without permissions is open to every session.
    assert_eq!(pretender.fetch(&Query::new("notes")).unwrap().len(), 1);
    pretender.insert("notes", json!({"id": "y", "body": "anyone"})).unwrap();
    // No role matches, no rule: reads see nothing, writes are denied.
    let nobody = db.session_from_claims(json!({"email": "x@y"})).unwrap();
    assert!(nobody.roles().is_empty());
    assert!(nobody.fetch(&Query::new("todos")).unwrap().is_empty());
    denied(nobody.insert("todos", json!({"id": "n1", "text": "t", "owner": "x"})));
    // A rule on a claim the token lacks matches nothing; it never fails the read.
    let claims_rule = Schema::from_json(&json!({"collections": {"docs": {
        "schema": {"type": "record", "properties": {"id": {"type": "string"}, "team": {"type": "string"}}},
        "permissions": {"authenticated": {"read": {"filter": [["team", "=", "$token.team"]]}}}}}}))
    .unwrap();
    let db = Database::builder().schema(claims_rule).open_in_memory().unwrap();
    db.insert("docs", json!({"id": "d", "team": "red"})).unwrap();
    let no_team = db.session_from_claims(json!({"sub": "u"})).unwrap();
    assert_eq!(no_team.roles()[0].name, "authenticated", "Triplit's default roles apply");
    assert!(no_team.fetch(&Query::new("docs")).unwrap().is_empty());
    let red = db.session_from_claims(json!({"sub": "u", "team": "red"})).unwrap();
    assert_eq!(red.fetch(&Query::new("docs")).unwrap().len(), 1);
}

#[test]
fn a_read_rule_narrows_by_index_like_the_querys_own_filter() {
    // Only the rule says `owner = me`: it must pick the owner index, not scan everything.
    let rule = json!({"filter": [["owner", "=", "$role.userId"]]});
    let db = Database::builder()
        .schema(
            Schema::from_json(&json!({
                "roles": {"user": {"match": {"sub": "$userId"}}, "admin": {"match": {"role": "admin"}}},
                "collections": {"todos": {
                    "schema": {"type": "record", "properties": {"id": {"type": "string"}, "owner": {"type": "string"}, "n": {"type": "number"}}},
                    "indexes": [["owner", "n"]],
                    "permissions": {"user": {"read": rule}, "admin": {"read": {"filter": [true]}}}
                }}
            }))
            .unwrap(),
        )
        .open_in_memory()
        .unwrap();
    db.transact(|tx| {
        for i in 0..200 {
            tx.insert("todos", json!({"id": format!("t{i:03}"), "owner": format!("u{}", i % 4), "n": i}))?;
        }
        Ok(())
    })
    .unwrap();
    let latest = Query::new("todos").order("n", triplite::Direction::Desc).limit(5);
    let user = db.session_from_claims(json!({"sub": "u1"})).unwrap();
    let plan = user.explain(&latest).unwrap();
    assert_eq!((plan.access.as_str(), plan.rows_read, plan.ordered_by_index), ("index (owner, n)", 5, true));
    assert_eq!(ids(&user.fetch(&latest).unwrap()), ["t197", "t193", "t189", "t185", "t181"]);
    // Two roles are an `or`: neither rule alone narrows, and the answer is still right.
    let both = db.session_from_claims(json!({"sub": "u1", "role": "admin"})).unwrap();
    assert_eq!(both.explain(&latest).unwrap().access, "scan");
    assert_eq!(ids(&both.fetch(&latest).unwrap()), ["t199", "t198", "t197", "t196", "t195"]);
}

#[test]
fn forged_tokens_get_no_session() {
    let db = open(true);
    let forged = mint_dev_token("not-the-secret", DevTokenKind::Secret, "p").unwrap();
    assert!(matches!(db.session(&forged), Err(Error::Auth { .. })));
}

// ---- no leak -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct World {
    todos: Vec<(String, String, Option<String>, i64)>, // owner, text, project, n
    projects: Vec<(String, String)>,                   // owner, name
}

fn world() -> impl Strategy<Value = World> {
    let user = prop::sample::select(vec!["alice", "bob", "carol"]);
    let projects = prop::collection::vec((user.clone(), prop::sample::select(vec!["x", "y", "z"])), 0..4);
    let todos = prop::collection::vec((user, prop::sample::select(vec!["a", "b", "c"]), 0usize..5, -2i64..3), 0..12);
    (projects, todos).prop_map(|(projects, todos)| World {
        projects: projects.into_iter().map(|(o, n)| (o.to_owned(), n.to_owned())).collect(),
        todos: todos
            .into_iter()
            .map(|(o, t, p, n)| (o.to_owned(), t.to_owned(), (p < 4).then(|| format!("p{p}")), n))
            .collect(),
    })
}

fn query() -> impl Strategy<Value = Json> {
    let filter = prop_oneof![
        (-2i64..3).prop_map(|n| json!(["n", ">", n])),
        prop::sample::select(vec!["a", "b"]).prop_map(|t| json!(["text", "=", t])),
        prop::sample::select(vec!["x", "y"]).prop_map(|n| json!(["project.name", "=", n])),
        prop::sample::select(vec!["alice", "bob"]).prop_map(|o| json!(["project.owner", "=", o])),
        Just(json!({"exists": {"_extends": "project"}})),
        prop::sample::select(vec!["alice", "bob"])
            .prop_map(|o| json!({"exists": {"collectionName": "projects", "where": [["owner", "=", o]]}})),
    ];
    let order = prop::sample::select(vec![
        json!([["n", "ASC"], ["id", "ASC"]]),
        json!([["project.name", "DESC"], ["id", "ASC"]]),
        json!(null),
    ]);
    (prop::collection::vec(filter, 0..3), order, prop::option::of(1usize..4), any::<bool>(), any::<bool>(), -2i64..3)
        .prop_map(|(filters, order, limit, include, after, cursor)| {
            let mut q = json!({"collectionName": "todos", "where": filters});
            if !order.is_null() {
                if after && order[0][0] == "n" {
                    q["after"] = json!([[cursor, "t05"], false]);
                }
                q["order"] = order;
            }
            if let Some(limit) = limit {
                q["limit"] = json!(limit);
            }
            if include {
                q["include"] = json!({"project": {"_extends": "project", "include": {"todos": null}}});
            }
            q
        })
}

fn load(db: &Database, world: &World, only_visible_to: Option<&str>) {
    // What `user` may read, computed directly from the rules' meaning.
    let todo_visible = |owner: &str| only_visible_to.is_none_or(|u| owner == u);
    let project_visible = |i: usize| {
        only_visible_to.is_none_or(|u| {
            world.projects[i].0 == u || world.todos.iter().any(|t| t.0 == u && t.2.as_deref() == Some(&format!("p{i}")))
        })
    };
    db.transact(|tx| {
        for (i, (owner, name)) in world.projects.iter().enumerate() {
            if project_visible(i) {
                tx.insert("projects", json!({"id": format!("p{i}"), "owner": owner, "name": name}))?;
            }
        }
        for (i, (owner, text, project, n)) in world.todos.iter().enumerate() {
            if todo_visible(owner) {
                let mut doc = json!({"id": format!("t{i:02}"), "owner": owner, "text": text, "n": n});
                if let Some(p) = project {
                    doc["project_id"] = json!(p);
                }
                tx.insert("todos", doc)?;
            }
        }
        Ok(())
    })
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// A user's answer equals the rule-free answer over only the rows the user may read: nothing
    /// hidden is returned, and nothing hidden changes the answer (through exists, relation
    /// paths, related order keys, cursors or includes).
    #[test]
    fn no_query_reveals_what_the_read_rules_hide(world in world(), queries in prop::collection::vec(query(), 1..5)) {
        let full = open(true);
        load(&full, &world, None);
        for user in ["alice", "bob"] {
            let visible = Database::builder().schema(schema(true)).open_in_memory().unwrap();
            load(&visible, &world, Some(user));
            let session = full.session_from_claims(json!({"sub": user})).unwrap();
            for json in &queries {
                let query = Query::from_json(json).unwrap();
                let got = session.fetch(&query).map_err(|e| e.to_string());
                let want = visible.fetch(&query).map_err(|e| e.to_string());
                prop_assert_eq!(&got, &want, "{} ran {}", user, json);
            }
        }
    }
}

#[test]
fn post_update_rules_see_the_previous_entity_as_prev() {
    let schema = Schema::from_json(&json!({"collections": {"docs": {
        "schema": {"type": "record", "properties": {"id": {"type": "string"}, "owner": {"type": "string"}, "text": {"type": "string"}}},
        "permissions": {"authenticated": {
            "read": {"filter": [true]}, "insert": {"filter": [true]}, "update": {"filter": [true]},
            "postUpdate": {"filter": [["owner", "=", "$prev.owner"]]}
        }}}}}))
    .unwrap();
    let db = Database::builder().schema(schema).open_in_memory().unwrap();
    let user = db.session_from_claims(json!({"sub": "u"})).unwrap();
    user.insert("docs", json!({"id": "d", "owner": "u", "text": "a"})).unwrap();
    user.update("docs", "d", json!({"text": "b"})).unwrap();
    denied(user.update("docs", "d", json!({"owner": "someone else"})));
    assert_eq!(db.fetch_by_id("docs", "d").unwrap().unwrap(), json!({"id": "d", "owner": "u", "text": "b"}));
}
