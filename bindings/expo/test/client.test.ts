/** The TypeScript API over the real library (koffi) and a `triplite serve` started here. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Status, TripliteError, type Entity } from '../src/index';
import { nodeNativeModule } from '../src/node';
import { client, collections, databaseFile, eventually, libraryPath, nativeModule, startServer, userToken, type Server } from './harness';

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

  test('a subscription ended from inside its own callback gets no result after it', async () => {
    // Connected, so the server's answer (delivered again as `fulfilled` from another thread)
    // races the unsubscribe too. Counted at the native module: below the client's own filter.
    const ivan = client(server, { token: userToken('ivan') });
    await eventually('the connection opens', () => ivan.connectionStatus === 'OPEN');
    let native = 0;
    const counting = nativeModule.addListener('onResult', () => (native += 1));
    let calls = 0;
    const unsubscribe: () => void = ivan.subscribe(ivan.query('todos'), () => {
      calls += 1;
      unsubscribe();
    });
    await eventually('the first result', () => calls === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const delivered = native;
    for (let i = 0; i < 5; i++) await ivan.insert('todos', { text: `after ${i}`, owner: 'ivan' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(calls, 1, 'no result after unsubscribing');
    assert.equal(native, delivered, 'the native side delivers nothing after the subscription is freed');
    counting.remove();
    await ivan.close();
  });

  test('calls made without awaiting run in order, and close waits for those under way', async () => {
    const jo = client(server, { token: userToken('jo'), autoConnect: false });
    // Triplit's `disconnect` is synchronous: apps call these one after another.
    const writes = [
      jo.insert('todos', { id: 'x', text: 'one', owner: 'jo' }),
      jo.update('todos', 'x', { text: 'two' }),
      jo.update('todos', 'x', (todo) => void (todo.text = `${todo.text as string} and three`)),
      jo.delete('todos', 'x'),
      jo.insert('todos', { id: 'x', text: 'four', owner: 'jo' }),
    ];
    const lookup = jo.fetchById('todos', 'x');
    await Promise.all(writes);
    assert.equal((await lookup)?.text, 'four', 'a read made after the writes sees all of them');
    // Closing while calls are under way: they finish (or are refused), then the client goes.
    let live = 0;
    jo.subscribe(jo.query('todos'), () => (live += 1));
    await eventually('the live subscription has a result', () => live > 0);
    const during = [jo.insert('todos', { text: 'during the close', owner: 'jo' }), jo.fetch(jo.query('todos'))];
    await jo.close();
    const outcomes = await Promise.allSettled(during);
    assert.ok(outcomes.every((outcome) => outcome.status === 'fulfilled'), 'calls made before close completed');
    await assert.rejects(jo.insert('todos', { text: 'after', owner: 'jo' }), /closed/);
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
    // The handler runs a second before `exp`; past `exp` a write goes through on the same socket.
    await eventually('the handler is called', () => refreshes === 1, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await kate.insert('todos', { text: 'after the refresh', owner: 'kate' });
    await eventually('a write after the refresh is acknowledged', async () => (await kate.syncStatus()).pendingTransactions === 0);
    const after = await kate.syncStatus();
    assert.equal(after.connection, 'OPEN');
    assert.equal(after.clientId, clientId, 'the socket stayed open');
    stop?.();
    await kate.close();
  });

  test('a query the server refuses reaches onError and ends the remote loading state', async () => {
    // The app's schema has a collection the server's does not: valid locally, refused there.
    const notes = { schema: { type: 'record', properties: { id: { type: 'string' }, text: { type: 'string' } } } };
    const lee = client(server, { token: userToken('lee'), schema: { ...collections, notes } });
    const errors: unknown[] = [];
    const states: { fetchingRemote: boolean; error: unknown }[] = [];
    const query = lee.query('notes');
    const unsubscribe = lee.subscribe(query, () => {}, (error) => errors.push(error));
    const unsubscribeStatus = lee.subscribeWithStatus(query, (state) => states.push(state));
    await eventually('the refusal arrives', () => errors.length > 0, 10_000);
    assert.ok(errors[0] instanceof TripliteError, String(errors[0]));
    await eventually('the loading state ends with the error', () => states.at(-1)?.error !== undefined && states.at(-1)?.fetchingRemote === false);
    unsubscribe();
    unsubscribeStatus();
    await lee.close();
  });

  test('the native module loads once per process and again for the same library', () => {
    assert.equal(nodeNativeModule(libraryPath).version(), nativeModule.version());
    assert.throws(() => nodeNativeModule('/elsewhere/libtriplite.so'), /loaded from/);
  });
});
