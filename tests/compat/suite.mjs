// The published @triplit/client against a triplite server. Started by tests/compat.rs with
// PORT, SERVICE_TOKEN and RSA_PRIVATE_KEY (the "identity provider's" key, whose public half is
// the server's EXTERNAL_JWT_SECRET, as in Triplit's Clerk guide).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import WS from 'ws';
import jwt from 'jsonwebtoken';

// Node 20 has no global WebSocket; the client also calls dispatchEvent, which `ws` lacks.
class NodeWebSocket extends WS {
  dispatchEvent(event) {
    this.emit(event.type, event);
    return true;
  }
}
globalThis.WebSocket = NodeWebSocket;
const { TriplitClient, HttpClient } = await import('@triplit/client');
const { schema, roles } = await loadSchema();

const PORT = process.env.PORT;
const SERVER = `http://127.0.0.1:${PORT}`;
const SERVICE_TOKEN = process.env.SERVICE_TOKEN;
const RSA_PRIVATE_KEY = fs.readFileSync(process.env.RSA_PRIVATE_KEY, 'utf8');

const userToken = (sub, seconds = 3600) =>
  jwt.sign({ sub }, RSA_PRIVATE_KEY, { algorithm: 'RS256', expiresIn: seconds });

async function loadSchema() {
  // The same schema the CLI pushed, compiled by the CLI's esbuild.
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [new URL('./triplit/schema.ts', import.meta.url).pathname],
    bundle: true, write: false, format: 'esm', platform: 'node', external: ['@triplit/*'],
  });
  const file = new URL('./.schema.compiled.mjs', import.meta.url).pathname;
  fs.writeFileSync(file, out.outputFiles[0].text);
  return import(file);
}

function client(token, options = {}) {
  return new TriplitClient({ serverUrl: SERVER, token, schema, roles, logLevel: 'error', ...options });
}

function waitFor(predicate, what, timeoutMs = 8000) {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = async () => {
      let ok = false;
      try { ok = await predicate(); } catch {}
      if (ok) return resolve();
      if (Date.now() - start > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

function ready(c) {
  return waitFor(() => c.syncEngine?.serverReady || c.connectionStatus === 'OPEN', 'READY');
}

const results = [];
async function step(name, body) {
  try {
    await body();
    results.push(name);
    console.log(`ok - ${name}`);
  } catch (e) {
    console.log(`not ok - ${name}\n  ${e.stack}`);
    process.exitCode = 1;
  }
}

const alice = client(userToken('alice'));
const alice2 = client(userToken('alice'));
const bob = client(userToken('bob'));
await Promise.all([ready(alice), ready(alice2), ready(bob)]);

await step('HTTP: the service token inserts and fetches as Triplit answers', async () => {
  const http = new HttpClient({ serverUrl: SERVER, token: SERVICE_TOKEN, schema, roles });
  const project = await http.insert('projects', { id: 'p1', name: 'Garden', owner: 'alice' });
  assert.equal(project.name, 'Garden');
  await http.insert('projects', { id: 'p2', name: 'House', owner: 'bob' });
  const projects = await http.fetch(http.query('projects').Order('id', 'ASC'));
  assert.deepEqual(projects.map((p) => p.id), ['p1', 'p2']);
  await http.update('projects', 'p2', (p) => { p.name = 'Home'; });
  assert.equal((await http.fetchById('projects', 'p2')).name, 'Home');
  const raw = await fetch(`${SERVER}/fetch`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  assert.equal(raw.status, 401);
  assert.equal((await raw.json()).name, 'NoTokenProvidedError');
  const unknown = await fetch(`${SERVER}/nope`, { method: 'POST', body: '{}', headers: { authorization: `Bearer ${SERVICE_TOKEN}` } });
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).name, 'RouteNotFoundError');
  const health = await fetch(`${SERVER}/healthcheck`);
  assert.equal(await health.text(), 'OK');
});

await step('subscriptions with includes and exists see the other client\'s inserts, updates and deletes', async () => {
  let todos = [];
  let projects = [];
  alice2.subscribe(alice2.query('todos').Include('project').Order('text', 'ASC'), (r) => { todos = r; });
  alice2.subscribe(
    alice2.query('projects').Where({ exists: alice2.query('todos').Where('project_id', '=', '$1.id').Where('completed', '=', false) }),
    (r) => { projects = r; },
  );
  await alice.insert('todos', { id: 't1', text: 'dig', owner: 'alice', project_id: 'p1' });
  await waitFor(() => todos.length === 1 && todos[0].project?.name === 'Garden', 'the insert, with its project');
  await waitFor(() => projects.map((p) => p.id).join() === 'p1', 'the project through exists');
  await alice.update('todos', 't1', (t) => { t.completed = true; });
  await waitFor(() => todos[0]?.completed === true, 'the update');
  await waitFor(() => projects.length === 0, 'the project leaving the exists query');
  await alice.delete('todos', 't1');
  await waitFor(() => todos.length === 0, 'the delete');
});

await step('users see only their own rows', async () => {
  await bob.insert('todos', { id: 'b1', text: 'bob only', owner: 'bob' });
  let bobs = [];
  bob.subscribe(bob.query('todos'), (r) => { bobs = r; });
  await waitFor(() => bobs.length === 1, 'bob\'s row');
  const seen = await alice.fetch(alice.query('todos'), { policy: 'remote-first' });
  assert.ok(!seen.some((t) => t.id === 'b1'), 'alice cannot read bob\'s row');
});

await step('a permission-denied write is rejected and rolled back on the client', async () => {
  let failure = null;
  alice.onFailureToSyncWrites((error) => { failure = error; });
  await alice.insert('todos', { id: 'forged', text: 'alice writes as bob', owner: 'bob' });
  await waitFor(() => failure !== null, 'the rejection');
  assert.equal(failure.name, 'WritePermissionError');
  await alice.clearPendingChangesForEntity('todos', 'forged');
  const local = await alice.fetchById('todos', 'forged', { policy: 'local-only' });
  assert.equal(local, null, 'rolled back locally');
  const http = new HttpClient({ serverUrl: SERVER, token: SERVICE_TOKEN, schema, roles });
  assert.equal(await http.fetchById('todos', 'forged'), null, 'never stored');
  await alice.insert('todos', { id: 'after', text: 'later writes go through', owner: 'alice' });
  await waitFor(async () => (await http.fetchById('todos', 'after')) !== null, 'the next write');
});

await step('a token update keeps the connection', async () => {
  const before = alice.syncEngine.connectionStatus ?? alice.connectionStatus;
  await alice.updateSessionToken(userToken('alice', 7200));
  await alice.insert('todos', { id: 'renewed', text: 'after renewal', owner: 'alice' });
  let seen = [];
  alice2.subscribe(alice2.query('todos').Where('id', '=', 'renewed'), (r) => { seen = r; });
  await waitFor(() => seen.length === 1, 'a write after the renewal');
  assert.equal(alice.connectionStatus, 'OPEN');
  assert.ok(before);
});

await step('an expired token is closed with TOKEN_EXPIRED', async () => {
  let sessionError = null;
  const brief = client(userToken('carol', 2), { onSessionError: (type) => { sessionError = type; } });
  await ready(brief);
  await new Promise((r) => setTimeout(r, 3100));
  await brief.insert('todos', { id: 'late', text: 'too late', owner: 'carol' }).catch(() => {});
  await waitFor(() => sessionError === 'TOKEN_EXPIRED', 'TOKEN_EXPIRED');
  await brief.disconnect();
});

await step('offline changes, deletes included, converge after reconnect', async () => {
  await alice.insert('todos', { id: 'o1', text: 'one', owner: 'alice' });
  await alice.insert('todos', { id: 'o2', text: 'two', owner: 'alice' });
  let seen = [];
  alice2.subscribe(alice2.query('todos').Where('id', 'in', ['o1', 'o2', 'o3']), (r) => { seen = r; });
  await waitFor(() => seen.length === 2, 'both rows before going offline');
  alice2.disconnect();
  await waitFor(() => alice2.connectionStatus === 'CLOSED', 'alice2 offline');
  await alice.delete('todos', 'o1');
  await alice.update('todos', 'o2', (t) => { t.text = 'two, edited offline'; });
  await alice2.insert('todos', { id: 'o3', text: 'written offline', owner: 'alice' });
  alice2.connect();
  await waitFor(() => {
    const ids = seen.map((t) => t.id).sort().join();
    return ids === 'o2,o3' && seen.find((t) => t.id === 'o2').text === 'two, edited offline';
  }, 'convergence on alice2');
  const http = new HttpClient({ serverUrl: SERVER, token: SERVICE_TOKEN, schema, roles });
  await waitFor(async () => (await http.fetchById('todos', 'o3')) !== null, 'the offline insert on the server');
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

await step('disconnect sticks: the server answers the close, so the client does not reconnect', async () => {
  const c = client(userToken('dave'));
  await ready(c);
  const statuses = [];
  c.onConnectionStatusChange((status) => statuses.push(status));
  c.disconnect();
  await waitFor(() => c.connectionStatus === 'CLOSED', 'closed');
  // The client retries an abnormal close after 250 ms, then 500 ms, ...
  await sleep(1500);
  assert.equal(c.connectionStatus, 'CLOSED');
  assert.ok(!statuses.slice(1).includes('OPEN'), `no reconnect, saw ${statuses.join(' → ')}`);
});

async function signInAndOut(name, signOut, signIn) {
  await step(name, async () => {
    const c = client(userToken('alice'));
    let rows = [];
    c.subscribe(c.query('todos'), (r) => { rows = r; });
    await waitFor(() => rows.some((t) => t.owner === 'alice'), 'alice\'s rows');
    await signOut(c);
    const statuses = [];
    const stop = c.onConnectionStatusChange((status) => statuses.push(status));
    await sleep(1500);
    assert.ok(!statuses.includes('OPEN') && c.connectionStatus !== 'OPEN', `signed out stays offline: ${statuses.join(' → ')}`);
    assert.deepEqual(await c.fetch(c.query('todos'), { policy: 'local-only' }), [], 'an empty cache');
    stop?.();
    await signIn(c, userToken('bob'));
    let seen = [];
    c.subscribe(c.query('todos'), (r) => { seen = r; });
    await waitFor(() => seen.length > 0 && seen.every((t) => t.owner === 'bob'), 'bob\'s rows only').catch((e) => { throw new Error(`${e.message}: saw ${JSON.stringify(seen.map((t) => t.id))}, status ${c.connectionStatus}, token ${!!c.token}`); });
    await sleep(500);
    assert.ok(seen.every((t) => t.owner === 'bob'), 'alice\'s rows never come back');
    await c.disconnect();
  });
}

// The Clerk guide's flow with the 1.x session API (its `updateToken` does not reach the sync
// session: `connect()` after it reopens with the previous user's token).
await signInAndOut(
  'the Clerk flow (endSession, clear, startSession): the next user never sees the previous user\'s rows',
  async (c) => { await c.endSession(); await c.clear(); },
  async (c, token) => { await c.startSession(token); },
);

for (const c of [alice, alice2, bob]) await c.disconnect();
console.log(`${results.length} passed`);
process.exit(process.exitCode ?? 0);
