/**
 * `@triplit/react`'s hooks over a `TripliteClient`: `useQuery`, `useQueryOne`, `useEntity` and
 * `useConnectionStatus`, with the same return shapes.
 */
import { useEffect, useState } from 'react';
import type { ConnectionStatus, QueryState, TripliteClient } from './client';
import type { CollectionQuery } from './query';
import type { Entity } from './values';

export interface QueryHookOptions {
  /** `false` subscribes to nothing and reports no results (default true). */
  enabled?: boolean;
}

const loading: QueryState = { results: undefined, error: undefined, fetching: true, fetchingLocal: true, fetchingRemote: false };
const disabled: QueryState = { results: undefined, error: undefined, fetching: false, fetchingLocal: false, fetchingRemote: false };

/** A live query: `{results, error, fetching, fetchingLocal, fetchingRemote}`. */
export function useQuery(client: TripliteClient, query: CollectionQuery, options: QueryHookOptions = {}): QueryState {
  const enabled = options.enabled ?? true;
  const [state, setState] = useState<QueryState>(enabled ? loading : disabled);
  // The query is compared by value: a builder made anew on each render is the same query.
  const key = JSON.stringify(query);
  useEffect(() => {
    if (!enabled) {
      setState(disabled);
      return undefined;
    }
    return client.subscribeWithStatus(JSON.parse(key) as CollectionQuery, setState);
  }, [client, key, enabled]);
  return state;
}

export interface QueryOneState {
  result: Entity | null;
  error: unknown;
  fetching: boolean;
  fetchingLocal: boolean;
  fetchingRemote: boolean;
}

/** The first result of a query: `{result, error, fetching, fetchingLocal, fetchingRemote}`. */
export function useQueryOne(client: TripliteClient, query: CollectionQuery, options?: QueryHookOptions): QueryOneState {
  const { results, ...flags } = useQuery(client, { ...toJson(query), limit: 1 }, options);
  return { ...flags, result: results?.[0] ?? null };
}

/** One entity by id, live. */
export function useEntity(client: TripliteClient, collection: string, id: string, options?: QueryHookOptions): QueryOneState {
  return useQueryOne(client, client.query(collection).Id(id), options);
}

/** The client's connection status, updated as it changes. */
export function useConnectionStatus(client: TripliteClient): ConnectionStatus {
  const [status, setStatus] = useState<ConnectionStatus>(client.connectionStatus);
  useEffect(() => client.onConnectionStatusChange(setStatus, true), [client]);
  return status;
}

function toJson(query: CollectionQuery): CollectionQuery {
  return JSON.parse(JSON.stringify(query)) as CollectionQuery;
}
