/**
 * Documents between their JSON form (what the library reads and writes) and the values
 * `@triplit/client` hands an app, by the schema as Triplit does: `date` attributes are `Date`s
 * and `set` attributes `Set`s; everything else is JSON as it is. Without a schema nothing is
 * converted.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Entity = Record<string, unknown>;

interface DataType {
  type?: string;
  properties?: Record<string, DataType>;
  items?: DataType;
}

interface CollectionDefinition {
  schema?: DataType;
  relationships?: Record<string, { query?: { collectionName?: string } }>;
}

/** The app's collections (Triplit's `schema` option: `{todos: {schema: S.Schema({...})}}`). */
export type Collections = Record<string, CollectionDefinition>;

export class Values {
  constructor(private readonly collections: Collections | undefined) {}

  /** A stored entity of `collection` as the app sees it (included relations too). */
  decode(collection: string, entity: Json): Entity {
    const definition = this.collections?.[collection];
    if (!definition || entity === null || typeof entity !== 'object' || Array.isArray(entity)) {
      return entity as unknown as Entity;
    }
    const out: Entity = {};
    for (const [key, value] of Object.entries(entity)) {
      const type = definition.schema?.properties?.[key];
      const related = relatedCollection(definition, key);
      if (type) out[key] = decodeValue(type, value);
      else if (related && Array.isArray(value)) out[key] = value.map((row) => this.decode(related, row));
      else if (related && value !== null && typeof value === 'object') out[key] = this.decode(related, value);
      else out[key] = value;
    }
    return out;
  }

  /** A document or patch from the app as JSON: `Date`s as ISO strings, `Set`s as arrays. */
  encode(value: unknown): Json {
    return JSON.parse(JSON.stringify(value, (_key, item: unknown) => (item instanceof Set ? [...item] : item)));
  }
}

/** A relation's target collection: Triplit 1.x `relationships`, or a 0.x `query` attribute. */
function relatedCollection(definition: CollectionDefinition, alias: string): string | undefined {
  const relation = definition.relationships?.[alias]?.query?.collectionName;
  if (relation) return relation;
  const property = definition.schema?.properties?.[alias] as { query?: { collectionName?: string } } | undefined;
  return property?.query?.collectionName;
}

function decodeValue(type: DataType, value: Json): unknown {
  if (value === null) return null;
  switch (type.type) {
    case 'date':
      return typeof value === 'string' || typeof value === 'number' ? new Date(value) : value;
    case 'set':
      return Array.isArray(value) ? new Set(value.map((item) => (type.items ? decodeValue(type.items, item) : item))) : value;
    case 'record': {
      if (typeof value !== 'object' || Array.isArray(value)) return value;
      const out: Entity = {};
      for (const [key, item] of Object.entries(value)) {
        const property = type.properties?.[key];
        out[key] = property ? decodeValue(property, item) : item;
      }
      return out;
    }
    default:
      return value;
  }
}

/**
 * The patch that turns `before` into `after` (what an updater function did to its copy):
 * changed attributes, records key by key, `null` for removed keys, and sets as
 * `{item: true | false}` for items added and removed, so concurrent additions merge.
 */
export function diff(before: Entity, after: Entity): Entity {
  const patch: Entity = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const [old, now] = [before[key], after[key]];
    if (now === undefined) {
      if (old !== undefined && old !== null) patch[key] = null;
    } else if (now instanceof Set) {
      const items = setChanges(old instanceof Set ? old : new Set(), now);
      if (Object.keys(items).length > 0) patch[key] = items;
    } else if (isPlainObject(now) && isPlainObject(old)) {
      const inner = diff(old, now);
      if (Object.keys(inner).length > 0) patch[key] = inner;
    } else if (!sameValue(old, now)) {
      patch[key] = now;
    }
  }
  return patch;
}

function setChanges(old: Set<unknown>, now: Set<unknown>): Record<string, boolean> {
  const changes: Record<string, boolean> = {};
  for (const item of now) if (!old.has(item)) changes[setKey(item)] = true;
  for (const item of old) if (!now.has(item)) changes[setKey(item)] = false;
  return changes;
}

function setKey(item: unknown): string {
  return item instanceof Date ? item.toISOString() : String(item);
}

function isPlainObject(value: unknown): value is Entity {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Set);
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return JSON.stringify(a) === JSON.stringify(b);
}
