/**
 * Triplit's query builder: `client.query('todos').Where('done', '=', false).Order('created',
 * 'DESC').Limit(10)`. Each method returns a new builder, and the builder is itself the query
 * (Triplit's query JSON: `collectionName`, `where`, `order`, `limit`, `include`, ...), so it goes
 * straight to `fetch` and `subscribe` and serializes as the C ABI reads it.
 */
export type Operator =
  | '='
  | '!='
  | '>'
  | '>='
  | '<'
  | '<='
  | 'like'
  | 'nlike'
  | 'in'
  | 'nin'
  | 'has'
  | '!has'
  | 'isDefined';

export type FilterStatement = [path: string, op: Operator, value: unknown];
export type WhereFilter =
  | FilterStatement
  | { mod: 'and' | 'or'; filters: WhereFilter[] }
  | { exists: CollectionQuery | { _extends: string; where?: WhereFilter[] } }
  | boolean;
export type OrderStatement = [path: string, direction: 'ASC' | 'DESC'];
export type IncludeValue = true | null | { _extends: string; [key: string]: unknown } | SubqueryInclude;
export interface SubqueryInclude {
  subquery: CollectionQuery;
  cardinality: 'one' | 'many';
}

export interface CollectionQuery {
  collectionName: string;
  select?: string[];
  where?: WhereFilter[];
  order?: OrderStatement[];
  limit?: number;
  after?: [cursor: unknown[], inclusive: boolean];
  include?: Record<string, IncludeValue>;
  vars?: Record<string, unknown>;
}

export const and = (filters: WhereFilter[]): WhereFilter => ({ mod: 'and', filters });
export const or = (filters: WhereFilter[]): WhereFilter => ({ mod: 'or', filters });
/** A filter on a relation: rows with at least one related row matching `where`. */
export const exists = (relation: string, options: { where?: WhereFilter[] } = {}): WhereFilter => ({
  exists: { _extends: relation, ...options },
});

export class QueryBuilder implements CollectionQuery {
  readonly collectionName: string;
  readonly select?: string[];
  readonly where?: WhereFilter[];
  readonly order?: OrderStatement[];
  readonly limit?: number;
  readonly after?: [cursor: unknown[], inclusive: boolean];
  readonly include?: Record<string, IncludeValue>;
  readonly vars?: Record<string, unknown>;

  constructor(query: CollectionQuery) {
    this.collectionName = query.collectionName;
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) (this as Record<string, unknown>)[key] = value;
    }
  }

  private with(changes: Partial<CollectionQuery>): QueryBuilder {
    return new QueryBuilder({ ...this.toJSON(), ...changes });
  }

  /** The query as plain JSON (what `JSON.stringify` writes). */
  toJSON(): CollectionQuery {
    const query: CollectionQuery = { collectionName: this.collectionName };
    for (const key of ['select', 'where', 'order', 'limit', 'after', 'include', 'vars'] as const) {
      if (this[key] !== undefined) (query as unknown as Record<string, unknown>)[key] = this[key];
    }
    return query;
  }

  Select(paths: string[] | undefined): QueryBuilder {
    return this.with({ select: paths });
  }

  /**
   * Adds filters (each call is ANDed with the previous): `Where('a', '=', 1)`,
   * `Where(['a', '=', 1], ['b', '>', 2])`, `Where([[...], [...]])`, or `Where(undefined)`.
   */
  Where(...args: unknown[]): QueryBuilder {
    const added = whereArguments(args);
    return added.length === 0 ? this : this.with({ where: [...(this.where ?? []), ...added] });
  }

  /** Replaces any `id` filter with `id = id`. */
  Id(id: string): QueryBuilder {
    const others = (this.where ?? []).filter((f) => !(Array.isArray(f) && f[0] === 'id'));
    return this.with({ where: [...others, ['id', '=', id]] });
  }

  /** `Order('a', 'ASC')`, `Order(['a', 'ASC'], ['b', 'DESC'])` or `Order([[...], [...]])`. */
  Order(...args: unknown[]): QueryBuilder {
    if (args.length === 0 || args[0] === undefined) return this;
    let added: OrderStatement[];
    if (typeof args[0] === 'string') added = [[args[0], (args[1] ?? 'ASC') as 'ASC' | 'DESC']];
    else if (args.length === 1 && Array.isArray(args[0]) && Array.isArray(args[0][0])) added = args[0] as OrderStatement[];
    else added = args as OrderStatement[];
    return this.with({ order: [...(this.order ?? []), ...added] });
  }

  Limit(limit: number): QueryBuilder {
    return this.with({ limit });
  }

  /** Starts after an entity (or the values of the order's attributes); needs an `Order` first. */
  After(after: unknown[] | Record<string, unknown> | undefined, inclusive = false): QueryBuilder {
    if (after === undefined) return this.with({ after: undefined });
    if (!this.order) throw new TypeError('After needs an Order first');
    const cursor = Array.isArray(after) ? after : this.order.map(([path]) => after[path]);
    return this.with({ after: [cursor, inclusive] });
  }

  /** Includes a relation by name, optionally narrowed: `Include('assignee')`. */
  Include(alias: string, extension?: Omit<CollectionQuery, 'collectionName'> & { _extends?: string }): QueryBuilder {
    const value: IncludeValue = extension ? { _extends: alias, ...extension } : null;
    return this.with({ include: { ...(this.include ?? {}), [alias]: value } });
  }

  SubqueryOne(alias: string, query: CollectionQuery): QueryBuilder {
    return this.subquery(alias, query, 'one');
  }

  SubqueryMany(alias: string, query: CollectionQuery): QueryBuilder {
    return this.subquery(alias, query, 'many');
  }

  private subquery(alias: string, query: CollectionQuery, cardinality: 'one' | 'many'): QueryBuilder {
    const subquery = query instanceof QueryBuilder ? query.toJSON() : query;
    return this.with({ include: { ...(this.include ?? {}), [alias]: { subquery, cardinality } } });
  }

  Vars(vars: Record<string, unknown>): QueryBuilder {
    return this.with({ vars: { ...(this.vars ?? {}), ...vars } });
  }
}

function whereArguments(args: unknown[]): WhereFilter[] {
  if (args.length === 0 || (args.length === 1 && args[0] === undefined)) return [];
  if (typeof args[0] === 'string') {
    if (args.length !== 3) throw new TypeError('Where(path, operator, value) takes three arguments');
    return [args as FilterStatement];
  }
  // One array of filters (its first item is itself a filter, not a path).
  if (args.length === 1 && Array.isArray(args[0]) && typeof args[0][0] !== 'string') {
    return args[0] as WhereFilter[];
  }
  return args as WhereFilter[];
}
