// The published @triplit/client as a peer of the native client (tests/client.rs): both on one
// triplite server. Env: SERVER (http URL), TOKEN (a user token), SCHEMA_FILE (Triplit JSON
// schema). It inserts `from-js`, waits for the native client's `from-native`, edits it, then
// waits until the native client deleted `from-js`; prints `done` and exits 0.
import fs from 'node:fs';
import WS from 'ws';

// Node 20 has no global WebSocket; the client also calls dispatchEvent, which `ws` lacks.
class NodeWebSocket extends WS {
  dispatchEvent(event) {
    this.emit(event.type, event);
    return true;
  }
}
globalThis.WebSocket = NodeWebSocket;
const { TriplitClient } = await import('@triplit/client');

const { collections, roles } = JSON.parse(fs.readFileSync(process.env.SCHEMA_FILE, 'utf8'));
const client = new TriplitClient({
  serverUrl: process.env.SERVER, token: process.env.TOKEN, schema: collections, roles, logLevel: 'error',
});

let latest = new Map();
const changed = [];
client.subscribe(client.query('todos'), (results) => {
  latest = new Map(results.map((t) => [t.id, t]));
  changed.splice(0).forEach((wake) => wake());
});
const until = (predicate, what) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20000);
  const check = () => (predicate() ? (clearTimeout(timer), resolve()) : changed.push(check));
  check();
});

await client.insert('todos', { id: 'from-js', owner: 'alice', text: 'hello from js' });
await until(() => latest.has('from-native'), 'the native client\'s insert');
await client.update('todos', 'from-native', (t) => { t.text = 'edited by js'; });
await until(() => !latest.has('from-js'), 'the native client\'s delete');
console.log('done');
await client.disconnect();
process.exit(0);
