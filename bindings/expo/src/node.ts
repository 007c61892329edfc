/**
 * The native side on Node: the C ABI through koffi (a dynamic FFI), for tests, servers and
 * scripts. `new TripliteClient({..., nativeModule: nodeNativeModule('target/release/libtriplite.so')})`.
 */
import { EventEmitter } from 'node:events';
import koffi from 'koffi';
import { Status } from './errors';
import type { ClientEvent, NativeListener, ResultEvent, TripliteNativeModule } from './native';

type Pointer = bigint;
type Call = ReturnType<ReturnType<typeof koffi.load>['func']>;

/** koffi's types are named process-wide: declared once, for every library loaded. */
let types: { ResultCallback: ReturnType<typeof koffi.proto>; DestroyCallback: ReturnType<typeof koffi.proto> } | undefined;
function declareTypes() {
  if (!types) {
    // Strings the library returns are converted to JS strings, then freed by the library
    // (through whichever library's `triplite_string_free` the conversion names: see below).
    koffi.disposable('triplite_owned_str', 'str', (pointer: unknown) => freeString?.(pointer));
    types = {
      ResultCallback: koffi.proto('void triplite_result_callback(void *user_data, const char *result_json)'),
      DestroyCallback: koffi.proto('void triplite_destroy_callback(void *user_data)'),
    };
  }
  return types;
}

/**
 * The loaded library's `triplite_string_free`. One library is loaded per process (a second
 * `nodeNativeModule` call for another path would free its strings with the first one's
 * allocator), so a second path is refused.
 */
let freeString: ((pointer: unknown) => void) | undefined;
let loadedPath: string | undefined;

/**
 * Loads the library at `libraryPath` (`libtriplite.so`, `.dylib` or `triplite.dll`).
 *
 * Every call runs on one of koffi's worker threads: the library calls back from its own threads,
 * koffi queues those callbacks for the JS thread, and the thread that made them waits until they
 * have run; a call on the JS thread that itself waits for such a callback (freeing a
 * subscription, closing a client) would never return.
 */
export function nodeNativeModule(libraryPath: string): TripliteNativeModule {
  if (loadedPath !== undefined && loadedPath !== libraryPath) {
    throw new Error(`triplite is loaded from ${loadedPath} already; one library per process (asked for ${libraryPath})`);
  }
  const { ResultCallback, DestroyCallback } = declareTypes();
  const lib = koffi.load(libraryPath);
  const free = lib.func('void triplite_string_free(void *text)');
  freeString = (pointer) => free(pointer);
  loadedPath = libraryPath;
  const fn = (declaration: string): Call => lib.func(declaration);
  const c = {
    version: fn('const char *triplite_version()'),
    open: fn('int triplite_client_open(const char *options, _Out_ void **out_client, _Out_ triplite_owned_str *out_err)'),
    close: fn('void triplite_client_close(void *client)'),
    insert: fn(
      'int triplite_client_insert(void *client, const char *collection, const char *doc, _Out_ triplite_owned_str *out_json, _Out_ triplite_owned_str *out_err)',
    ),
    update: fn(
      'int triplite_client_update(void *client, const char *collection, const char *id, const char *patch, _Out_ triplite_owned_str *out_err)',
    ),
    delete: fn('int triplite_client_delete(void *client, const char *collection, const char *id, _Out_ triplite_owned_str *out_err)'),
    transact: fn(
      'int triplite_client_transact(void *client, const char *ops, _Out_ triplite_owned_str *out_json, _Out_ triplite_owned_str *out_err)',
    ),
    fetch: fn(
      'int triplite_client_fetch(void *client, const char *query, const char *options, _Out_ triplite_owned_str *out_json, _Out_ triplite_owned_str *out_err)',
    ),
    subscribe: fn(
      'int triplite_client_subscribe(void *client, const char *query, const char *options, triplite_result_callback *on_result, void *user_data, triplite_destroy_callback *destroy, _Out_ void **out_sub, _Out_ triplite_owned_str *out_err)',
    ),
    subscriptionFree: fn('void triplite_subscription_free(void *sub)'),
    updateToken: fn('int triplite_client_update_token(void *client, const char *token, _Out_ triplite_owned_str *out_err)'),
    connect: fn('int triplite_client_connect(void *client, _Out_ triplite_owned_str *out_err)'),
    disconnect: fn('int triplite_client_disconnect(void *client, _Out_ triplite_owned_str *out_err)'),
    reset: fn('int triplite_client_reset(void *client, _Out_ triplite_owned_str *out_err)'),
    startSession: fn('int triplite_client_start_session(void *client, const char *token, bool connect, _Out_ triplite_owned_str *out_err)'),
    endSession: fn('int triplite_client_end_session(void *client, _Out_ triplite_owned_str *out_err)'),
    updateSessionToken: fn('int triplite_client_update_session_token(void *client, const char *token, _Out_ triplite_owned_str *out_err)'),
    onEvent: fn(
      'int triplite_client_on_event(void *client, triplite_result_callback *on_event, void *user_data, triplite_destroy_callback *destroy, _Out_ triplite_owned_str *out_err)',
    ),
    status: fn('int triplite_client_status(void *client, _Out_ triplite_owned_str *out_json, _Out_ triplite_owned_str *out_err)'),
  };

  const events = new EventEmitter();
  events.setMaxListeners(0);
  const clients = new Map<number, { pointer: Pointer; subscriptions: Set<number> }>();
  const subscriptions = new Map<number, { pointer: Pointer; client: number }>();

  /**
   * A callback slot for `deliver`, with the destroy callback that releases it: the library
   * calls destroy once, after the last callback (also when registering fails), so a slot is
   * never reused while a late callback could still reach it. koffi runs destroy on the JS
   * thread, inside the slot's own machinery: the slots are released just after.
   */
  const callbackPair = (deliver: (text: string) => void): [Pointer, Pointer] => {
    const callback = koffi.register((_: unknown, text: string) => deliver(text), koffi.pointer(ResultCallback));
    const destroy: Pointer = koffi.register(
      () =>
        setImmediate(() => {
          koffi.unregister(callback);
          koffi.unregister(destroy);
        }),
      koffi.pointer(DestroyCallback),
    );
    return [callback, destroy];
  };

  /** Runs `call` on a worker with `args` then one out-slot per name; rejects for a status ≠ OK. */
  const run = (call: Call, args: unknown[], outs: number): Promise<unknown[]> =>
    new Promise((resolve, reject) => {
      const slots = Array.from({ length: outs + 1 }, () => [null] as unknown[]);
      call.async(...args, ...slots, (error: unknown, status: number | undefined) => {
        if (error) return reject(error);
        const message = slots[outs][0];
        if (status !== undefined && status !== Status.OK) return reject(failure(status, typeof message === 'string' ? message : ''));
        resolve(slots.slice(0, outs).map((slot) => slot[0]));
      });
    });
  /** Runs a `void` call (freeing, closing) on a worker. */
  const release = (call: Call, pointer: Pointer): Promise<void> =>
    new Promise((resolve, reject) => call.async(pointer, (error: unknown) => (error ? reject(error) : resolve())));

  const client = (handle: number): Pointer => {
    const entry = clients.get(handle);
    if (!entry) throw failure(Status.MISUSE, `MisuseError: no open client ${handle}`);
    return entry.pointer;
  };
  const json = async (call: Call, args: unknown[]): Promise<string> => (await run(call, args, 1))[0] as string;
  const done = async (call: Call, args: unknown[]): Promise<void> => {
    await run(call, args, 0);
  };

  const module: TripliteNativeModule = {
    version: () => c.version() as string,

    async clientOpen(handle, optionsJson) {
      if (clients.has(handle)) throw failure(Status.MISUSE, `MisuseError: client ${handle} is open already`);
      const [pointer] = (await run(c.open, [optionsJson], 1)) as [Pointer];
      clients.set(handle, { pointer, subscriptions: new Set() });
      const [onEvent, destroy] = callbackPair((text) => events.emit('onEvent', { client: handle, json: text }));
      try {
        await done(c.onEvent, [pointer, onEvent, null, destroy]);
      } catch (error) {
        clients.delete(handle);
        await release(c.close, pointer);
        throw error;
      }
    },

    async clientClose(handle) {
      const entry = clients.get(handle);
      if (!entry) return;
      clients.delete(handle);
      for (const subscription of entry.subscriptions) await module.subscriptionFree(subscription);
      await release(c.close, entry.pointer);
    },

    clientInsert: async (handle, collection, doc) => json(c.insert, [client(handle), collection, doc]),
    clientUpdate: async (handle, collection, id, patch) => done(c.update, [client(handle), collection, id, patch]),
    clientDelete: async (handle, collection, id) => done(c.delete, [client(handle), collection, id]),
    clientTransact: async (handle, ops) => json(c.transact, [client(handle), ops]),
    clientFetch: async (handle, query, options) => json(c.fetch, [client(handle), query, options]),

    async clientSubscribe(handle, subscription, query, options) {
      const owner = client(handle);
      if (subscriptions.has(subscription)) throw failure(Status.MISUSE, `MisuseError: subscription ${subscription} exists already`);
      const [onResult, destroy] = callbackPair((text) => events.emit('onResult', { subscription, json: text }));
      const [pointer] = (await run(c.subscribe, [owner, query, options, onResult, null, destroy], 1)) as [Pointer];
      subscriptions.set(subscription, { pointer, client: handle });
      clients.get(handle)?.subscriptions.add(subscription);
    },

    async subscriptionFree(subscription) {
      const entry = subscriptions.get(subscription);
      if (!entry) return;
      subscriptions.delete(subscription);
      clients.get(entry.client)?.subscriptions.delete(subscription);
      await release(c.subscriptionFree, entry.pointer);
    },

    clientUpdateToken: async (handle, token) => done(c.updateToken, [client(handle), token]),
    clientConnect: async (handle) => done(c.connect, [client(handle)]),
    clientDisconnect: async (handle) => done(c.disconnect, [client(handle)]),
    clientReset: async (handle) => done(c.reset, [client(handle)]),
    clientStartSession: async (handle, token, connect) => done(c.startSession, [client(handle), token, connect]),
    clientEndSession: async (handle) => done(c.endSession, [client(handle)]),
    clientUpdateSessionToken: async (handle, token) => done(c.updateSessionToken, [client(handle), token]),
    clientStatus: async (handle) => json(c.status, [client(handle)]),

    addListener(eventName: 'onResult' | 'onEvent', listener: ((event: ResultEvent) => void) | ((event: ClientEvent) => void)): NativeListener {
      events.on(eventName, listener);
      return { remove: () => events.off(eventName, listener) };
    },
  };
  return module;
}

/** A rejection shaped as the Expo module's: `code` the status's name, `message` the library's text. */
function failure(status: number, message: string): Error & { code: string } {
  const name = Object.entries(Status).find(([, value]) => value === status)?.[0] ?? 'INTERNAL';
  return Object.assign(new Error(message), { code: `TRIPLITE_${name}` });
}
