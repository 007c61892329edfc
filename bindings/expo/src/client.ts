import { TripliteError } from './errors';
import type { ClientEvent, NativeListener, ResultEvent, TripliteNativeModule } from './native';
import { QueryBuilder, type CollectionQuery } from './query';
import { diff, Values, type Collections, type Entity, type Json } from './values';
import { expoNativeModule } from './expo';

export type ConnectionStatus = 'UNINITIALIZED' | 'CONNECTING' | 'OPEN' | 'CLOSING' | 'CLOSED';
export type SessionErrorType = 'ROLES_MISMATCH' | 'TOKEN_EXPIRED' | 'SCHEMA_MISMATCH' | 'UNAUTHORIZED';
export type FetchPolicy = 'local-first' | 'local-only' | 'remote-first' | 'remote-only' | 'local-and-remote';

export interface FetchOptions {
  policy?: FetchPolicy;
  /** For `local-and-remote`: how long to wait for the server before reading locally (ms). */
  timeout?: number;
}

export interface SubscriptionOptions {
  /** Called once, when the server has answered the query. */
  onRemoteFulfilled?: () => void;
}

export interface RefreshOptions {
  /** A fresh token, or null to keep the current one (then the connection closes at `exp`). */
  refreshHandler: () => Promise<string | null>;
  /** Milliseconds between refreshes; by default a second before each token's `exp`. */
  interval?: number;
}

export interface TripliteClientOptions {
  serverUrl?: string;
  token?: string;
  /** The collections (Triplit's `schema` option) and, beside them, the `roles`. */
  schema?: Collections;
  roles?: Record<string, unknown>;
  /** `'memory'` (the default) or a SQLite file that keeps data and the outbox across restarts. */
  storage?: 'memory' | { type: 'memory' } | { type: 'sqlite'; path: string };
  autoConnect?: boolean;
  refreshOptions?: RefreshOptions;
  onSessionError?: (type: SessionErrorType) => void;
  /** PEM authorities to trust for an `https://` server instead of Mozilla's. */
  caCertificates?: string;
  /** The native side: the Expo module by default; `nodeNativeModule(path)` on Node. */
  nativeModule?: TripliteNativeModule;
}

/** A write the server refused, as `onFailureToSyncWrites` reports it. */
export interface FailedWrite {
  txId: string;
}

/** What `subscribeWithStatus` (and the React hooks) report. */
export interface QueryState<T = Entity> {
  results: T[] | undefined;
  error: unknown;
  /** Waiting for the local result, or for the server's first answer while connected. */
  fetching: boolean;
  fetchingLocal: boolean;
  fetchingRemote: boolean;
}

export interface Transaction {
  insert(collection: string, doc: Entity): Promise<Entity>;
  update(collection: string, id: string, patch: Entity | ((entity: Entity) => void | Promise<void>)): Promise<void>;
  delete(collection: string, id: string): Promise<void>;
  fetch(query: CollectionQuery, options?: FetchOptions): Promise<Entity[]>;
  fetchOne(query: CollectionQuery, options?: FetchOptions): Promise<Entity | null>;
  fetchById(collection: string, id: string, options?: FetchOptions): Promise<Entity | null>;
}

type Listener<T extends unknown[]> = (...args: T) => void;

/** Handles name clients and subscriptions across every client of a process. */
let lastHandle = 0;
const nextHandle = () => ++lastHandle;

/**
 * A local database that syncs with a triplite or Triplit server, shaped like `@triplit/client`'s
 * `TriplitClient`: writes are local and durable at once and go to the server from an outbox;
 * reads and subscriptions see them at once. A write the server refuses is reported through
 * `onFailureToSyncWrites` and rolled back, and later writes still go through.
 */
export class TripliteClient {
  /** Resolves once the local database is open; every call waits for it. */
  readonly ready: Promise<void>;
  private readonly native: TripliteNativeModule;
  private readonly handle = nextHandle();
  private readonly values: Values;
  private readonly listeners: NativeListener[] = [];
  /**
   * Live subscriptions: where their results and failures go, whether the native side has
   * them, and the id their query has with the server (from their first result).
   */
  private readonly subscriptions = new Map<
    number,
    { deliver: (event: ResultEvent) => void; fail: (error: unknown) => void; subscribed: Promise<boolean>; queryId: string | undefined }
  >();
  /** Queries the server refused, by id: a subscription that learns its id later still hears. */
  private readonly failedQueries = new Map<string, unknown>();
  /** The last call that later calls wait for (writes and the token lifecycle run in order). */
  private tail: Promise<unknown> = Promise.resolve();
  /** Calls under way, which `close` waits for. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly statusListeners = new Set<Listener<[ConnectionStatus]>>();
  private readonly sessionErrorListeners = new Set<Listener<[SessionErrorType]>>();
  private readonly failureListeners = new Set<Listener<[unknown, FailedWrite]>>();
  private status: ConnectionStatus = 'UNINITIALIZED';
  private cancelRefresh: (() => void) | undefined;
  private closed = false;

  constructor(options: TripliteClientOptions = {}) {
    this.native = options.nativeModule ?? expoNativeModule();
    this.values = new Values(options.schema);
    if (options.onSessionError) this.sessionErrorListeners.add(options.onSessionError);
    this.listeners.push(
      this.native.addListener('onEvent', (event) => this.onEvent(event)),
      this.native.addListener('onResult', (event) => this.subscriptions.get(event.subscription)?.deliver(event)),
    );
    this.ready = this.open(options);
    // Like Triplit's, the constructor does not throw for a failed open: every call rejects.
    this.ready.catch(() => {});
  }

  private async open(options: TripliteClientOptions): Promise<void> {
    const storage = options.storage;
    const path = typeof storage === 'object' && storage.type === 'sqlite' ? storage.path : ':memory:';
    const schema = options.schema ? { collections: options.schema, roles: options.roles ?? {} } : undefined;
    const settings = {
      serverUrl: options.serverUrl,
      token: options.token,
      schema,
      path,
      // The native side registers for events just after it opens: connecting only then, below,
      // means no status change comes before the status read here.
      autoConnect: false,
      caCertificates: options.caCertificates,
    };
    await this.invoke(() => this.native.clientOpen(this.handle, JSON.stringify(settings)));
    const { connection } = JSON.parse(await this.invoke(() => this.native.clientStatus(this.handle))) as { connection: ConnectionStatus };
    this.setStatus(connection);
    if ((options.autoConnect ?? true) && options.token && options.serverUrl) {
      await this.invoke(() => this.native.clientConnect(this.handle));
    }
    if (options.token && options.refreshOptions) this.scheduleRefresh(options.token, options.refreshOptions);
  }

  // --- writes -------------------------------------------------------------------------------

  /** Inserts locally (durable at once) and queues it for the server; the entity as stored. */
  async insert(collection: string, doc: Entity): Promise<Entity> {
    const json = await this.call(() => this.native.clientInsert(this.handle, collection, JSON.stringify(this.values.encode(doc))));
    return this.values.decode(collection, (JSON.parse(json) as { entity: Json }).entity);
  }

  /**
   * Patches an entity: with an object, its attributes (`null` removes an optional one); with a
   * function, it changes a copy of the entity and what it changed is written.
   */
  async update(collection: string, id: string, change: Entity | ((entity: Entity) => void | Promise<void>)): Promise<void> {
    await this.call(async () => {
      const patch = await this.patchOf(collection, id, change);
      return this.native.clientUpdate(this.handle, collection, id, JSON.stringify(patch));
    });
  }

  async delete(collection: string, id: string): Promise<void> {
    await this.call(() => this.native.clientDelete(this.handle, collection, id));
  }

  /**
   * Runs `callback` and writes what it did as one local transaction, sent as one server
   * transaction; resolves with the callback's result. Reads inside it see the committed data,
   * not the transaction's own writes (they are applied together when the callback returns);
   * `tx.insert` resolves with the document as given. A callback that throws writes nothing.
   */
  async transact<T>(callback: (tx: Transaction) => Promise<T> | T): Promise<T> {
    const ops: Json[] = [];
    const tx: Transaction = {
      insert: async (collection, doc) => {
        ops.push({ op: 'insert', collection, doc: this.values.encode(doc) });
        return doc;
      },
      update: async (collection, id, change) => {
        ops.push({ op: 'update', collection, id, patch: this.values.encode(await this.patchOf(collection, id, change)) });
      },
      delete: async (collection, id) => {
        ops.push({ op: 'delete', collection, id });
      },
      fetch: (query, options) => this.fetch(query, options),
      fetchOne: (query, options) => this.fetchOne(query, options),
      fetchById: (collection, id, options) => this.fetchById(collection, id, options),
    };
    const output = await callback(tx);
    if (ops.length > 0) await this.call(() => this.native.clientTransact(this.handle, JSON.stringify(ops)));
    return output;
  }

  /** The patch of an update; an updater function gets a copy of the entity as stored locally. */
  private async patchOf(collection: string, id: string, change: Entity | ((entity: Entity) => void | Promise<void>)): Promise<Json> {
    if (typeof change !== 'function') return this.values.encode(change);
    // Read directly, not through the queue of calls: this runs inside a queued call.
    const query = JSON.stringify(this.query(collection).Id(id).Limit(1));
    const found = JSON.parse(await this.native.clientFetch(this.handle, query, JSON.stringify({ policy: 'local-only' }))) as Json[];
    const current = found[0] === undefined ? null : this.values.decode(collection, found[0]);
    if (!current) throw new TripliteError(4, 'EntityNotFoundError', `Could not find entity with id ${id} in collection ${collection}`);
    const copy = structuredClone(current);
    await change(copy);
    return this.values.encode(diff(current, copy));
  }

  // --- reads --------------------------------------------------------------------------------

  /** A query builder: `client.query('todos').Where('done', '=', false)`. */
  query(collection: string): QueryBuilder {
    return new QueryBuilder({ collectionName: collection });
  }

  async fetch(query: CollectionQuery, options: FetchOptions = {}): Promise<Entity[]> {
    const fetchOptions = { policy: options.policy ?? 'local-first', timeout: options.timeout };
    const json = await this.call(() => this.native.clientFetch(this.handle, JSON.stringify(query), JSON.stringify(fetchOptions)), 'after');
    return (JSON.parse(json) as Json[]).map((entity) => this.values.decode(query.collectionName, entity));
  }

  async fetchOne(query: CollectionQuery, options?: FetchOptions): Promise<Entity | null> {
    const one = query instanceof QueryBuilder ? query.Limit(1) : { ...query, limit: 1 };
    return (await this.fetch(one, options))[0] ?? null;
  }

  fetchById(collection: string, id: string, options?: FetchOptions): Promise<Entity | null> {
    return this.fetchOne(this.query(collection).Id(id), options);
  }

  /**
   * Calls `onResults` with the local result at once and again after every change (local
   * writes, the server's data). The query is registered with the server while subscribed; the
   * returned function unsubscribes.
   */
  subscribe(
    query: CollectionQuery,
    onResults: (results: Entity[]) => void,
    onError?: (error: unknown) => void,
    options: SubscriptionOptions = {},
  ): () => void {
    let fulfilled = false;
    return this.subscribeRaw(
      query,
      (results, isFulfilled) => {
        onResults(results);
        if (isFulfilled && !fulfilled) {
          fulfilled = true;
          options.onRemoteFulfilled?.();
        }
      },
      onError,
    );
  }

  /** `subscribe` with loading flags, as `@triplit/client`'s (what the React hooks use). */
  subscribeWithStatus(query: CollectionQuery, callback: (state: QueryState) => void): () => void {
    let state: QueryState = {
      results: undefined,
      error: undefined,
      fetching: true,
      fetchingLocal: true,
      fetchingRemote: false,
    };
    // As Triplit's: waiting on the server from the start while a connection is open or being
    // made, and for good no more once it has answered, the query failed, or the connection closed.
    let waitingOnRemote = this.status === 'OPEN' || this.status === 'CONNECTING';
    const report = (changes: Partial<QueryState>) => {
      const next = { ...state, ...changes };
      next.fetchingRemote = waitingOnRemote;
      next.fetching = next.fetchingLocal || next.fetchingRemote;
      state = next;
      callback(state);
    };
    report({});
    const unsubscribeStatus = this.onConnectionStatusChange((status) => {
      if (status === 'CLOSED' && waitingOnRemote) {
        waitingOnRemote = false;
        report({});
      }
    });
    const unsubscribe = this.subscribeRaw(
      query,
      (results, isFulfilled) => {
        if (isFulfilled) waitingOnRemote = false;
        report({ results, fetchingLocal: false });
      },
      (error) => {
        waitingOnRemote = false;
        report({ error, fetchingLocal: false });
      },
    );
    return () => {
      unsubscribeStatus();
      unsubscribe();
    };
  }

  private subscribeRaw(
    query: CollectionQuery,
    onResults: (results: Entity[], fulfilled: boolean) => void,
    onError?: (error: unknown) => void,
  ): () => void {
    const subscription = nextHandle();
    let active = true;
    const fail = (error: unknown) => {
      if (active) onError?.(error);
    };
    const deliver = (event: ResultEvent) => {
      if (!active) return;
      const result = JSON.parse(event.json) as { results: Json[]; fulfilled?: boolean; queryId?: string };
      const entry = this.subscriptions.get(subscription);
      if (entry && result.queryId && entry.queryId === undefined) {
        entry.queryId = result.queryId;
        const failure = this.failedQueries.get(result.queryId);
        if (failure !== undefined) return fail(failure);
      }
      onResults(
        result.results.map((entity) => this.values.decode(query.collectionName, entity)),
        result.fulfilled === true,
      );
    };
    const subscribed = this.call(() => this.native.clientSubscribe(this.handle, subscription, JSON.stringify(query), null), 'after').then(
      () => true,
      (error: unknown) => {
        this.subscriptions.delete(subscription);
        fail(error);
        return false;
      },
    );
    this.subscriptions.set(subscription, { deliver, fail, subscribed, queryId: undefined });
    return () => {
      if (!active) return;
      active = false;
      void this.unsubscribe(subscription);
    };
  }

  private async unsubscribe(subscription: number): Promise<void> {
    const entry = this.subscriptions.get(subscription);
    if (!entry) return;
    this.subscriptions.delete(subscription);
    if (await entry.subscribed) await this.native.subscriptionFree(subscription).catch(() => {});
  }

  // --- connection and token lifecycle ---------------------------------------------------------

  get connectionStatus(): ConnectionStatus {
    return this.status;
  }

  /** Replaces the token (null removes it) for the next connection. */
  async updateToken(token: string | null | undefined): Promise<void> {
    this.stopRefresh();
    await this.call(() => this.native.clientUpdateToken(this.handle, token ?? null));
  }

  async connect(): Promise<void> {
    await this.call(() => this.native.clientConnect(this.handle));
  }

  async disconnect(): Promise<void> {
    await this.call(() => this.native.clientDisconnect(this.handle));
  }

  /** Sign-out: wipes the local data, the outbox and the sync checkpoints; keeps the schema. */
  async reset(): Promise<void> {
    await this.call(() => this.native.clientReset(this.handle));
  }

  /**
   * Triplit 1.x's `startSession`: ends the previous session, takes `token`, connects if
   * `connect`. With `refreshOptions`, its handler is called a second before each token's `exp`
   * (or every `interval` ms) and its token replaces the session's while the socket stays open;
   * resolves with a function that stops the refreshing.
   */
  async startSession(token: string | undefined, connect = true, refreshOptions?: RefreshOptions): Promise<(() => void) | undefined> {
    this.stopRefresh();
    if (token === undefined) {
      await this.endSession();
      return undefined;
    }
    if (refreshOptions && isExpired(token)) token = (await refreshOptions.refreshHandler()) ?? token;
    const started = token;
    await this.call(() => this.native.clientStartSession(this.handle, started, connect));
    if (!refreshOptions) return undefined;
    this.scheduleRefresh(started, refreshOptions);
    return () => this.stopRefresh();
  }

  async endSession(): Promise<void> {
    this.stopRefresh();
    await this.call(() => this.native.clientEndSession(this.handle));
  }

  /** A new token for the open connection, kept open (its roles must not change). */
  async updateSessionToken(token: string): Promise<void> {
    await this.call(() => this.native.clientUpdateSessionToken(this.handle, token));
  }

  onConnectionStatusChange(callback: (status: ConnectionStatus) => void, runImmediately = false): () => void {
    this.statusListeners.add(callback);
    if (runImmediately) callback(this.status);
    return () => this.statusListeners.delete(callback);
  }

  /** Called when the server closes the connection for good (`UNAUTHORIZED`, `TOKEN_EXPIRED`, ...). */
  onSessionError(callback: (type: SessionErrorType) => void): () => void {
    this.sessionErrorListeners.add(callback);
    return () => this.sessionErrorListeners.delete(callback);
  }

  /**
   * Called for each transaction the server refused, with its error (`{name, message, status}`)
   * and `{txId}`; the transaction is rolled back locally and later ones still sync.
   */
  onFailureToSyncWrites(callback: (error: unknown, writes: FailedWrite) => void): () => void {
    this.failureListeners.add(callback);
    return () => this.failureListeners.delete(callback);
  }

  /** `{connection, pendingTransactions, clientId, lastError}` as the library reports them. */
  async syncStatus(): Promise<{ connection: ConnectionStatus; pendingTransactions: number; clientId: string | null; lastError: string | null }> {
    return JSON.parse(await this.call(() => this.native.clientStatus(this.handle), 'after'));
  }

  /** Closes the client: its subscriptions end and its connection closes; a file keeps the outbox. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopRefresh();
    await this.ready.catch(() => {});
    // No call may be inside the library when the client goes.
    await Promise.allSettled([...this.inFlight]);
    // Subscriptions outlive their client in the C ABI: each is freed first.
    await Promise.all([...this.subscriptions.keys()].map((subscription) => this.unsubscribe(subscription)));
    await this.native.clientClose(this.handle).catch(() => {});
    for (const listener of this.listeners) listener.remove();
  }

  // --- internals ------------------------------------------------------------------------------

  private onEvent(event: ClientEvent): void {
    if (event.client !== this.handle) return;
    const data = JSON.parse(event.json) as { type: string; status?: ConnectionStatus; reason?: SessionErrorType; txId?: string; error?: unknown };
    switch (data.type) {
      case 'connection':
        if (data.status) this.setStatus(data.status);
        break;
      case 'session_error':
        for (const listener of [...this.sessionErrorListeners]) listener(data.reason as SessionErrorType);
        break;
      case 'write_rejected':
        for (const listener of [...this.failureListeners]) listener(data.error, { txId: data.txId ?? '' });
        break;
      case 'query_failed': {
        const queryId = (data as { queryId?: string }).queryId ?? '';
        const error = TripliteError.fromWire(data.error);
        this.failedQueries.set(queryId, error);
        for (const entry of this.subscriptions.values()) if (entry.queryId === queryId) entry.fail(error);
        break;
      }
    }
  }

  private setStatus(status: ConnectionStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const listener of [...this.statusListeners]) listener(status);
  }

  /**
   * A native call once the client is open (rejecting as its open did) and every earlier
   * ordered call has finished: writes and the token lifecycle run in the order they were made,
   * awaited or not, as Triplit's synchronous `disconnect` and queued writes do. `'after'`
   * (reads, subscribing) waits for those too but does not hold back later calls.
   */
  private call<T>(body: () => Promise<T>, order: 'ordered' | 'after' = 'ordered'): Promise<T> {
    if (this.closed) return Promise.reject(new TripliteError(1, 'MisuseError', 'the client is closed'));
    const earlier = this.tail;
    const run = (async () => {
      await earlier.catch(() => {});
      await this.ready;
      return this.invoke(body);
    })();
    if (order === 'ordered') this.tail = run.catch(() => {});
    this.inFlight.add(run);
    const settled = () => this.inFlight.delete(run);
    run.then(settled, settled);
    return run;
  }

  /** A native call whose failures become `TripliteError`s. */
  private async invoke<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      throw TripliteError.from(error);
    }
  }

  private scheduleRefresh(token: string, options: RefreshOptions): void {
    this.stopRefresh();
    let current = token;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      const expiry = expiresAt(current);
      const delay = options.interval ?? (expiry === undefined ? undefined : expiry - Date.now() - 1000);
      if (delay === undefined) return;
      timer = setTimeout(refresh, Math.max(delay, 1000));
    };
    const refresh = async () => {
      const fresh = await options.refreshHandler().catch(() => null);
      if (this.cancelRefresh !== cancel) return;
      if (fresh) {
        current = fresh;
        await this.updateSessionToken(fresh).catch(() => {});
      } else if (this.status === 'OPEN' || this.status === 'CONNECTING') {
        await this.disconnect().catch(() => {});
      }
      if (this.cancelRefresh === cancel) arm();
    };
    const cancel = () => clearTimeout(timer);
    this.cancelRefresh = cancel;
    arm();
  }

  private stopRefresh(): void {
    this.cancelRefresh?.();
    this.cancelRefresh = undefined;
  }
}

/** A JWT's `exp` in milliseconds, when it has one. */
function expiresAt(token: string): number | undefined {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(payload)) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function isExpired(token: string): boolean {
  const expiry = expiresAt(token);
  return expiry !== undefined && expiry <= Date.now();
}
