/** The TypeScript API over the real library (koffi) and a `triplite serve` started here. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Status, TripliteError, type Entity } from '../src/index';
import { client, databaseFile, eventually, startServer, userToken, type Server } from './harness';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

const texts = (results: Entity[]) => results.map((todo) => todo.text as string).sort();

describe('TripliteClient', () => {
  test('the Clerk guide: sign in, a new user, sign out', async () => {
    // Two users' rows on the server.
    for (const user of ['alice', 'bob']) {
      const writer = client(server, { token: userToken(user) });
      await writer.insert('todos', { text: `${user}'s`, owner: user });
      await eventually(`${user}'s write is acknowledged`, async () => (await writer.syncStatus()).pendingTransactions === 0);
      await writer.close();
    }
    // Signed in as alice: her rows sync into the app's file database.
    const app = client(server, { token: userToken('alice'), storage: { type: 'sqlite', path: databaseFile() } });
    let latest: Entity[] = [];
    const unsubscribe = app.subscribe(app.query('todos'), (results) => (latest = results));
    await eventually("alice's row syncs", () => texts(latest).join() === "alice's");
    assert.equal(app.connectionStatus, 'OPEN');

    // A new token for another user: disconnect, update the token, connect.
    await app.disconnect();
    await app.updateToken(userToken('bob'));
    await app.connect();
    const local = await app.fetch(app.query('todos'), { policy: 'local-only' });
    assert.ok(
      local.every((todo) => todo.owner !== 'alice'),
      "the next user never sees the previous user's rows",
    );
    await eventually("bob's row syncs", () => texts(latest).join() === "bob's");

    // Signed out: disconnect, no token, reset.
    await app.disconnect();
    await app.updateToken(null);
    await app.reset();
    assert.deepEqual(await app.fetch(app.query('todos'), { policy: 'local-only' }), []);
    await eventually('the subscription sees the reset', () => latest.length === 0);
    assert.equal((await app.syncStatus()).connection, 'CLOSED');
    unsubscribe();
    await app.close();
  });

  test("a live query updates from another client's writes", async () => {
    const reader = client(server, { token: userToken('erin') });
    const writer = client(server, { token: userToken('erin') });
    const seen: string[][] = [];
    let fulfilled = false;
    const unsubscribe = reader.subscribe(
      reader.query('todos').Where('owner', '=', 'erin').Order('text', 'ASC'),
      (results) => seen.push(texts(results)),
      (error) => assert.fail(String(error)),
      { onRemoteFulfilled: () => (fulfilled = true) },
    );
    await eventually('the server answers the query', () => fulfilled);
    await writer.insert('todos', { text: 'from the other client', owner: 'erin' });
    await eventually("the other client's write arrives", () => seen.at(-1)?.includes('from the other client') === true);
    unsubscribe();
    await Promise.all([reader.close(), writer.close()]);
  });

  test('a write the server refuses reaches onFailureToSyncWrites and the next write lands', async () => {
    // Carol holds the id; Dave cannot read her row, so his client accepts an insert over it and
    // only the server can refuse it.
    const carol = client(server, { token: userToken('carol') });
    await carol.insert('todos', { id: 'contested', text: "carol's", owner: 'carol' });
    await eventually("carol's write is acknowledged", async () => (await carol.syncStatus()).pendingTransactions === 0);

    const dave = client(server, { token: userToken('dave') });
    const failures: { error: unknown; txId: string }[] = [];
    dave.onFailureToSyncWrites((error, writes) => failures.push({ error, txId: writes.txId }));
    await dave.insert('todos', { id: 'contested', text: "dave's", owner: 'dave' });
    await eventually('the refusal is reported', () => failures.length === 1);
    // Refused as an update of a row Dave may not update (the id is taken).
    assert.equal((failures[0].error as { name?: string }).name, 'WritePermissionError');
    assert.ok(failures[0].txId.length > 0, 'the failure names its transaction');
    assert.equal(await dave.fetchById('todos', 'contested', { policy: 'local-only' }), null, 'rolled back locally');

    // The outbox is not jammed: the next write goes through.
    const next = await dave.insert('todos', { text: 'next', owner: 'dave' });
    await eventually("dave's next write is acknowledged", async () => (await dave.syncStatus()).pendingTransactions === 0);
    const other = client(server, { token: userToken('dave') });
    const remote = await other.fetch(other.query('todos'), { policy: 'remote-first' });
    assert.deepEqual(texts(remote), ['next']);
    assert.equal(remote[0].id, next.id);
    assert.equal(failures.length, 1);
    await Promise.all([carol.close(), dave.close(), other.close()]);
  });

  test('failures are TripliteErrors with the status and Triplit’s name', async () => {
    const frank = client(server, { token: userToken('frank'), autoConnect: false });
    await assert.rejects(frank.insert('nope', { text: 'x' }), (error: unknown) => {
      assert.ok(error instanceof TripliteError);
      assert.equal(error.status, Status.SCHEMA);
      assert.match(error.name, /Error$/);
      return true;
    });
    // The schema's rules run locally: a write they deny fails at once, before any round trip.
    await assert.rejects(frank.insert('todos', { text: 'not mine', owner: 'grace' }), (error: unknown) => {
      assert.ok(error instanceof TripliteError);
      assert.equal(error.status, Status.PERMISSION);
      assert.equal(error.name, 'WritePermissionError');
      return true;
    });
    await assert.rejects(frank.update('todos', 'missing', (todo) => void (todo.text = 'x')), (error: unknown) => {
      assert.ok(error instanceof TripliteError);
      assert.equal(error.name, 'EntityNotFoundError');
      return true;
    });
    await frank.close();
    await assert.rejects(frank.fetch(frank.query('todos')), TripliteError, 'a closed client refuses calls');
  });

  test('dates and sets by the schema, updaters, transactions and the query builder', async () => {
    const hana = client(server, { token: userToken('hana'), autoConnect: false });
    const due = new Date('2026-12-24T18:00:00.000Z');
    const inserted = await hana.insert('todos', { text: 'wrap presents', owner: 'hana', tags: new Set(['home']), due });
    assert.ok(inserted.due instanceof Date && inserted.due.getTime() === due.getTime(), 'a date comes back as a Date');
    assert.deepEqual(inserted.tags, new Set(['home']));

    await hana.update('todos', inserted.id as string, (todo) => {
      (todo.tags as Set<string>).add('gifts');
      (todo.tags as Set<string>).delete('home');
      todo.text = 'wrap all presents';
    });
    const updated = await hana.fetchById('todos', inserted.id as string);
    assert.deepEqual(updated?.tags, new Set(['gifts']));
    assert.equal(updated?.text, 'wrap all presents');
    assert.ok(updated?.due instanceof Date);

    const output = await hana.transact(async (tx) => {
      await tx.insert('todos', { id: 'a', text: 'a', owner: 'hana' });
      await tx.insert('todos', { id: 'b', text: 'b', owner: 'hana' });
      await tx.delete('todos', inserted.id as string);
      return 'done';
    });
    assert.equal(output, 'done');
    const ordered = await hana.fetch(hana.query('todos').Where('owner', '=', 'hana').Order('text', 'DESC').Limit(1));
    assert.deepEqual(texts(ordered), ['b']);
    assert.equal((await hana.fetchOne(hana.query('todos').Where([['text', '=', 'a']])))?.id, 'a');
    await assert.rejects(
      hana.transact(async (tx) => {
        await tx.insert('todos', { id: 'c', text: 'c', owner: 'hana' });
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.equal(await hana.fetchById('todos', 'c'), null, 'a transaction that throws writes nothing');
    await hana.close();
  });

  test('a subscription ended from inside its own callback stops cleanly', async () => {
    const ivan = client(server, { token: userToken('ivan'), autoConnect: false });
    let calls = 0;
    const unsubscribe: () => void = ivan.subscribe(ivan.query('todos'), () => {
      calls += 1;
      unsubscribe();
    });
    await eventually('the first result', () => calls === 1);
    for (let i = 0; i < 5; i++) await ivan.insert('todos', { text: `after ${i}`, owner: 'ivan' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(calls, 1, 'no result after unsubscribing');
    // Closing with a subscription still live frees it first, while its results keep coming.
    let live = 0;
    ivan.subscribe(ivan.query('todos'), () => (live += 1));
    await eventually('the live subscription has a result', () => live > 0);
    void ivan.insert('todos', { text: 'during the close', owner: 'ivan' }).catch(() => {});
    await ivan.close();
  });

  test('connection status and session errors reach their callbacks', async () => {
    const statuses: string[] = [];
    const sessionErrors: string[] = [];
    const expired = userToken('judy', -60);
    const judy = client(server, { token: userToken('judy'), autoConnect: false });
    judy.onConnectionStatusChange((status) => statuses.push(status), true);
    judy.onSessionError((type) => sessionErrors.push(type));
    await judy.connect();
    await eventually('the connection opens', () => judy.connectionStatus === 'OPEN');
    await judy.startSession(expired);
    await eventually('the server refuses the expired token', () => sessionErrors.length > 0);
    assert.equal(sessionErrors[0], 'UNAUTHORIZED');
    assert.ok(statuses.includes('CONNECTING') && statuses.includes('OPEN'), statuses.join());
    await judy.close();
  });

  test("startSession's refresh handler replaces the token before it expires, on the open socket", async () => {
    const kate = client(server, { autoConnect: false });
    let refreshes = 0;
    const stop = await kate.startSession(userToken('kate', 3), true, {
      refreshHandler: async () => {
        refreshes += 1;
        return userToken('kate', 3600);
      },
    });
    await eventually('the connection opens', () => kate.connectionStatus === 'OPEN');
    const { clientId } = await kate.syncStatus();
    // The handler runs a second before `exp`; past `exp` the connection is still the same one.
    await eventually('the handler is called', () => refreshes === 1, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const after = await kate.syncStatus();
    assert.equal(after.connection, 'OPEN');
    assert.equal(after.clientId, clientId, 'the socket stayed open');
    await kate.insert('todos', { text: 'after the refresh', owner: 'kate' });
    await eventually('a write after the refresh is acknowledged', async () => (await kate.syncStatus()).pendingTransactions === 0);
    stop?.();
    await kate.close();
  });
});
