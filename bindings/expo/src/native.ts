/**
 * The native side of the binding: the C ABI's `triplite_client_*` calls with JSON strings in and
 * out, and the callbacks turned into events. Two implementations: the Expo module on a phone
 * (`ios/`, `android/`, over the Swift and Kotlin bindings) and `nodeNativeModule` over koffi on
 * Node. Everything above this interface is plain TypeScript and runs the same over both.
 *
 * Handles are numbers the caller chooses, unique in the process (so the first events of a
 * client or a subscription, which may come before its call resolves, already name it); a call on
 * a handle not open rejects with `TRIPLITE_MISUSE`. Every call that can fail rejects with an error whose `code` is the C
 * status's name (`"TRIPLITE_PERMISSION"`) and whose `message` is the library's text
 * (`"WritePermissionError: ..."`); `TripliteError.from` reads both.
 *
 * Calls are asynchronous because the library delivers results on threads of its own and some
 * calls wait for one under way (freeing a subscription waits for its callback): on Node a call
 * made on the JS thread while that callback waits for the JS thread would never return.
 */
export interface TripliteNativeModule {
  /** The library's version, e.g. `"0.1.0"`. */
  version(): string;

  /** `triplite_client_open` as `client`: options `{serverUrl, token, schema, path, autoConnect}`. */
  clientOpen(client: number, optionsJson: string): Promise<void>;
  /** `triplite_client_close`; the handle and its subscriptions are gone afterwards. */
  clientClose(client: number): Promise<void>;

  /** `{"entity": {...}, "txId": "..."}`. */
  clientInsert(client: number, collection: string, docJson: string): Promise<string>;
  clientUpdate(client: number, collection: string, id: string, patchJson: string): Promise<void>;
  clientDelete(client: number, collection: string, id: string): Promise<void>;
  /** Ops as `triplite_db_transact`; `{"results": [...], "txId": "..."}`. */
  clientTransact(client: number, opsJson: string): Promise<string>;
  /** The results array; `optionsJson` is `{"policy": ...}` or null. */
  clientFetch(client: number, queryJson: string, optionsJson: string | null): Promise<string>;

  /**
   * Subscribes as `subscription`; each result arrives as an `onResult` event carrying it. No
   * event for it is emitted once `subscriptionFree` has resolved.
   */
  clientSubscribe(client: number, subscription: number, queryJson: string, optionsJson: string | null): Promise<void>;
  subscriptionFree(subscription: number): Promise<void>;

  clientUpdateToken(client: number, token: string | null): Promise<void>;
  clientConnect(client: number): Promise<void>;
  clientDisconnect(client: number): Promise<void>;
  clientReset(client: number): Promise<void>;
  clientStartSession(client: number, token: string, connect: boolean): Promise<void>;
  clientEndSession(client: number): Promise<void>;
  clientUpdateSessionToken(client: number, token: string): Promise<void>;
  /** `{"connection": "OPEN", "pendingTransactions": 0, "clientId": ..., "lastError": ...}`. */
  clientStatus(client: number): Promise<string>;

  /**
   * `onResult`: a subscription's result (`{"results", "added", "removed", "updated",
   * "fulfilled"}`); `onEvent`: a client's event (`triplite_client_on_event`'s JSON), registered
   * by `clientOpen` for every client.
   */
  addListener(eventName: 'onResult', listener: (event: ResultEvent) => void): NativeListener;
  addListener(eventName: 'onEvent', listener: (event: ClientEvent) => void): NativeListener;
}

export interface ResultEvent {
  subscription: number;
  json: string;
}

export interface ClientEvent {
  client: number;
  json: string;
}

export interface NativeListener {
  remove(): void;
}
