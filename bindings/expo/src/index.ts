export { TripliteClient } from './client';
export type {
  ConnectionStatus,
  FailedWrite,
  FetchOptions,
  FetchPolicy,
  QueryState,
  RefreshOptions,
  SessionErrorType,
  SubscriptionOptions,
  Transaction,
  TripliteClientOptions,
} from './client';
export { Status, TripliteError } from './errors';
export type { StatusName } from './errors';
export type { ClientEvent, NativeListener, ResultEvent, TripliteNativeModule } from './native';
export { and, exists, or, QueryBuilder } from './query';
export type { CollectionQuery, FilterStatement, Operator, OrderStatement, WhereFilter } from './query';
export type { Collections, Entity, Json } from './values';
