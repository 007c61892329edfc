// The published @triplit/client's side of benches/client.rs, against the real Triplit server.
// usage: node client-bench.mjs <mode> ; env SERVER (http URL), TOKEN (a user token for
// `alice`), SCHEMA_FILE (the JSON schema), N.
//   insert-tx    N inserts in one transaction, until the server acknowledged them
//   insert-each  N inserts, one `await insert()` each, until acknowledged
//   latency      N sequential writes from client A, each until client B's subscription has it
//   initial      an empty client subscribes to `todos`; until it holds N rows
// Prints one JSON line: {"mode", "n", "ms"} or, for latency, {"mode", "n", "samples_ms": [...]}.
import fs from 'node:fs';
import WS from 'ws';

// Node 20 has no global WebSocket; the client also calls dispatchEvent, which `ws` lacks.
class NodeWebSocket extends WS {
  dispatchEvent(event) { this.emit(event.type, event); return true; }
}
globalThis.WebSocket = NodeWebSocket;
const { TriplitClient } = await import('@triplit/client');

const mode = process.argv[2];
const n = +(process.env.N || 10000);
const { collections, roles } = JSON.parse(fs.readFileSync(process.env.SCHEMA_FILE, 'utf8'));
const hard = setTimeout(() => { console.log(JSON.stringify({ mode, n, error: 'timed out after 300 s' })); process.exit(3); }, 300000);

function client() {
  return new TriplitClient({
    serverUrl: process.env.SERVER, token: process.env.TOKEN, schema: collections, roles, logLevel: 'error',
  });
}

function ready(c) {
  return new Promise((resolve) => {
    if (c.syncEngine?.serverReady) return resolve();
    const off = c.onSyncMessageReceived((m) => { if (m.type === 'READY') { off(); resolve(); } });
  });
}

/// Resolves once every CHANGES sent so far is acknowledged and nothing waits in the outbox.
function acknowledged(c, wanted) {
  return new Promise((resolve) => {
    let acks = 0;
    c.onSyncMessageReceived((m) => {
      if (m.type === 'CHANGES_ACK') acks++;
      if (m.type === 'ERROR') console.error('ERROR', JSON.stringify(m.payload).slice(0, 300));
    });
    const check = async () => {
      // The client builds its local database asynchronously after the constructor returns.
      if (!c.db?.entityStore) return setTimeout(check, 1);
      const empty = (await c.db.entityStore.doubleBuffer.getLockedBuffer().isEmpty(c.db.kv))
        && (await c.db.entityStore.doubleBuffer.getUnlockedBuffer().isEmpty(c.db.kv));
      if (acks >= wanted && empty && !c.syncEngine.syncInProgress) return resolve();
      setTimeout(check, 1);
    };
    check();
  });
}

const todo = (i) => ({ text: `todo ${i}`, completed: i % 3 === 0, owner: 'alice' });
const now = () => Number(process.hrtime.bigint()) / 1e6;
let result;
if (mode === 'insert-tx' || mode === 'insert-each') {
  const c = client();
  await ready(c);
  const done = acknowledged(c, 1);
  const t0 = now();
  if (mode === 'insert-tx') {
    await c.transact(async (tx) => { for (let i = 0; i < n; i++) await tx.insert('todos', todo(i)); });
  } else {
    for (let i = 0; i < n; i++) await c.insert('todos', todo(i));
  }
  await done;
  result = { mode, n, ms: now() - t0 };
  await c.disconnect();
} else if (mode === 'latency') {
  const [a, b] = [client(), client()];
  await Promise.all([ready(a), ready(b)]);
  let seen = new Set();
  let waiting = null;
  const query = b.query('todos').Where('completed', '=', false).Order('created_at', 'DESC').Limit(20);
  b.subscribe(query, (results) => {
    seen = new Set(results.map((t) => t.text));
    if (waiting && seen.has(waiting.text)) { const w = waiting; waiting = null; w.resolve(); }
  });
  await new Promise((r) => setTimeout(r, 200));
  const samples = [];
  for (let i = 0; i < n; i++) {
    const text = `latency ${i}`;
    const arrived = new Promise((resolve) => { waiting = { text, resolve }; });
    const t0 = now();
    await a.insert('todos', { text, completed: false, owner: 'alice' });
    await arrived;
    samples.push(now() - t0);
  }
  result = { mode, n, samples_ms: samples };
  await Promise.all([a.disconnect(), b.disconnect()]);
} else if (mode === 'initial') {
  const c = client();
  const t0 = now();
  await new Promise((resolve) => {
    c.subscribe(c.query('todos'), (results) => { if (results.length >= n) resolve(); });
  });
  result = { mode, n, ms: now() - t0 };
  await c.disconnect();
} else {
  throw new Error(`unknown mode ${mode}`);
}
clearTimeout(hard);
console.log(JSON.stringify(result));
process.exit(0);
