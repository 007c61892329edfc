// The embedded workloads of benches/compare for Triplit 1.x: @triplit/db in-process on its
// SQLite storage (better-sqlite3), configured as @triplit/server configures it
// (ServerEntityStore, clientId 'server'). The Rust side runs the same workloads on triplite
// and raw rusqlite and computes every statistic; this script only times.
// usage: node db-bench.mjs ; env SCHEMA_FILE (the compare schema, JSON), SIZE (todos held),
//   REPS (fresh databases for the bulk insert), RUNS (timed runs of each query), DATA_DIR,
//   LIVE (comma-separated subscription counts, or empty).
// Prints one JSON line per workload: {"workload", "size", "unit", "samples": [...]}.
import fs from 'node:fs';
import path from 'node:path';
import { createDB, ServerEntityStore } from '@triplit/db';
import { createTriplitStorageProvider } from '@triplit/server';

const size = +process.env.SIZE;
const reps = +(process.env.REPS || 3);
const runs = +(process.env.RUNS || 20);
const live = (process.env.LIVE || '').split(',').filter(Boolean).map(Number);
const schema = JSON.parse(fs.readFileSync(process.env.SCHEMA_FILE, 'utf8'));
for (const collection of Object.values(schema.collections)) delete collection.indexes; // triplite's own key
const now = () => Number(process.hrtime.bigint()) / 1e6;
const emit = (workload, samples, unit = 'ms', n = size) =>
  console.log(JSON.stringify({ workload, size: n, unit, samples }));

let databases = 0;
async function open() {
  process.env.LOCAL_DATABASE_URL = path.join(process.env.DATA_DIR, `triplit-${process.pid}-${databases++}.db`);
  const kv = await createTriplitStorageProvider('sqlite');
  const { db, event } = await createDB({ schema, clientId: 'server', entityStore: new ServerEntityStore(), kv });
  if (event.type !== 'SUCCESS') throw new Error(`createDB: ${event.type}`);
  db.onCommit(async () => { await db.updateQueryViews(); db.broadcastToQuerySubscribers(); });
  return db;
}

// The same todos as benches/common: owners cycling through 10 users, every third completed.
const todo = (i) => ({
  id: `id-${String(i).padStart(7, '0')}`, text: `todo number ${i}`, completed: i % 3 === 0,
  owner: `user-${i % 10}`, created_at: new Date(1_700_000_000_000 + i),
});
const admin = { skipRules: true };

async function load(db) {
  await db.transact(async (tx) => {
    for (let i = 0; i < 10; i++) await tx.insert('profiles', { id: `user-${i}`, name: `User ${i}` });
    for (let i = 0; i < size; i++) await tx.insert('todos', todo(i));
  }, admin);
}

async function timed(count, body) {
  const samples = [];
  for (let k = 0; k < count; k++) { const t0 = now(); await body(k); samples.push(now() - t0); }
  return samples;
}

let db;
const bulk = [];
for (let r = 0; r < reps; r++) {
  db = await open();
  const t0 = now();
  await load(db);
  bulk.push(now() - t0);
}
emit('bulk insert, one transaction', bulk);

emit('point lookup by id', await timed(runs * 10, async (k) => {
  if (!(await db.fetchById('todos', todo((k * 7919) % size).id, admin))) throw new Error('lookup missed');
}));
const indexed = db.query('todos').Where('owner', '=', 'user-3').Where('completed', '=', false).Order('created_at', 'DESC').Limit(20);
const check = (rows, n) => { if (rows.length !== n) throw new Error(`expected ${n} rows, got ${rows.length}`); };
emit('filter + order + limit 20', await timed(runs, async () => check(await db.fetch(indexed, admin), 20)));
const user = db.withSessionVars({ sub: 'user-3' });
const ownRows = user.query('todos').Where('completed', '=', false).Order('created_at', 'DESC').Limit(20);
emit('filter + order + limit 20, as a user under a read rule', await timed(runs, async () => check(await user.fetch(ownRows), 20)));
const included = db.query('todos').Where('owner', '=', 'user-3').Where('completed', '=', false).Order('created_at', 'DESC').Limit(20).Include('profile');
emit('relational include, limit 20', await timed(runs, async () => {
  const rows = await db.fetch(included, admin);
  check(rows, 20);
  if (rows[0].profile?.name !== 'User 3') throw new Error('include missed');
}));
const like = db.query('todos').Where('text', 'like', '%99%').Order('created_at', 'ASC').Limit(20);
emit('unindexed scan (like), limit 20', await timed(Math.max(3, runs >> 1), async () => check(await db.fetch(like, admin), 20)));
let single = size;
emit('single-entity transaction', await timed(runs * 10, async () => {
  const doc = todo(single++);
  await db.transact(async (tx) => { await tx.insert('todos', doc); }, admin);
}));

// Live queries on a database of `size` todos: `count` subscriptions, each to its own owner's
// window; a write into owner 0's window, until its callback has it.
// Each count on a fresh database, as on the Rust side (here the same query subscribed again
// after an unsubscribe is not updated by later writes).
for (const count of live) {
  const db = await open();
  await load(db);
  const subs = [];
  let waiting = null;
  let initial = 0;
  // Only owners 0-9 hold todos; Triplit does not call back with an empty first result.
  const holding = Math.min(count, 10);
  const started = new Promise((resolve) => {
    for (let s = 0; s < count; s++) {
      const query = db.query('todos').Where('owner', '=', `user-${s}`).Where('completed', '=', false).Order('created_at', 'DESC').Limit(20);
      let first = true;
      subs.push(db.subscribe(query, (results) => {
        if (first) { first = false; if (s < 10 && ++initial === holding) resolve(); }
        if (s === 0 && waiting && results.some((r) => r.id === waiting.id)) { const w = waiting; waiting = null; w.resolve(); }
      }, (e) => { throw e; }, admin));
    }
  });
  // Subscriptions register asynchronously: refresh the views until every first result is in.
  let settled = false;
  started.then(() => { settled = true; });
  for (let tries = 0; !settled; tries++) {
    if (tries === 6000) throw new Error(`only ${initial} of ${holding} subscriptions answered in 60 s`);
    await db.updateQueryViews(); db.broadcastToQuerySubscribers();
    await new Promise((r) => setTimeout(r, 10));
  }
  const samples = await timed(runs, async (k) => {
    const doc = { ...todo(single++), owner: 'user-0', completed: false, created_at: new Date(2_000_000_000_000 + k) };
    const arrived = new Promise((resolve) => { waiting = { id: doc.id, resolve }; });
    await db.insert('todos', doc, admin);
    const late = setTimeout(() => { console.error(`write ${k} did not reach its subscription in 10 s`); process.exit(4); }, 10000);
    await arrived;
    clearTimeout(late);
  });
  await Promise.all(subs.map((unsubscribe) => unsubscribe()));
  emit('live query: write → callback, by subscriptions open', samples, 'ms', count);
}
for (const f of fs.readdirSync(process.env.DATA_DIR)) if (f.startsWith(`triplit-${process.pid}-`)) fs.rmSync(path.join(process.env.DATA_DIR, f), { force: true });
process.exit(0);
