/** The query builder writes Triplit's query JSON; `diff` finds what an updater changed. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { and, or, QueryBuilder, Status, TripliteError } from '../src/index';
import { diff } from '../src/values';

const todos = () => new QueryBuilder({ collectionName: 'todos' });

test('the builder writes the query JSON the C ABI reads', () => {
  const query = todos()
    .Where('done', '=', false)
    .Where(['owner', '=', 'alice'], or([['a', '>', 1], ['b', '<', 2]]))
    .Order('created', 'DESC')
    .Order(['text', 'ASC'])
    .Limit(10)
    .Include('assignee')
    .SubqueryOne('project', new QueryBuilder({ collectionName: 'projects' }).Where('id', '=', '$1.project'));
  assert.deepEqual(JSON.parse(JSON.stringify(query)), {
    collectionName: 'todos',
    where: [
      ['done', '=', false],
      ['owner', '=', 'alice'],
      { mod: 'or', filters: [['a', '>', 1], ['b', '<', 2]] },
    ],
    order: [
      ['created', 'DESC'],
      ['text', 'ASC'],
    ],
    limit: 10,
    include: {
      assignee: null,
      project: { subquery: { collectionName: 'projects', where: [['id', '=', '$1.project']] }, cardinality: 'one' },
    },
  });
});

test('each builder call returns a new query and leaves the old one as it was', () => {
  const base = todos().Where('a', '=', 1);
  const narrowed = base.Where([['b', '=', 2]]).Id('x').Id('y');
  assert.deepEqual(base.where, [['a', '=', 1]]);
  assert.deepEqual(narrowed.where, [['a', '=', 1], ['b', '=', 2], ['id', '=', 'y']]);
  assert.equal(todos().Where(undefined).where, undefined);
  assert.deepEqual(todos().Where(and([['a', '=', 1]])).where, [{ mod: 'and', filters: [['a', '=', 1]] }]);
  assert.throws(() => todos().After({ text: 'x' }), /Order first/);
  assert.deepEqual(todos().Order('text', 'ASC').After({ text: 'x', id: 'i' }).after, [['x'], false]);
  assert.throws(() => todos().Where('a', '='), /three arguments/);
});

test('diff writes changed attributes, removed ones as null, records by key and set changes', () => {
  const before = { text: 'a', note: 'n', tags: new Set(['x', 'y']), meta: { a: 1, b: 2 }, due: new Date(0), same: [1, 2] };
  const after = { text: 'b', tags: new Set(['y', 'z']), meta: { a: 1, b: 3 }, due: new Date(0), same: [1, 2] };
  assert.deepEqual(diff(before, after), { text: 'b', note: null, tags: { z: true, x: false }, meta: { b: 3 } });
  assert.deepEqual(diff(before, before), {});
});

test("a native rejection becomes a TripliteError, Expo's wrapping and all", () => {
  const node = TripliteError.from(Object.assign(new Error('WritePermissionError: not yours'), { code: 'TRIPLITE_PERMISSION' }));
  assert.deepEqual([node instanceof TripliteError, (node as TripliteError).status, (node as TripliteError).name], [true, Status.PERMISSION, 'WritePermissionError']);
  assert.equal((node as TripliteError).message, 'not yours');
  const expo = TripliteError.from(
    Object.assign(new Error("Call to function 'Triplite.clientInsert' has been rejected.\n→ Caused by: CollectionNotFoundError: no such collection"), {
      code: 'TRIPLITE_SCHEMA',
    }),
  ) as TripliteError;
  assert.deepEqual([expo.status, expo.name, expo.message], [Status.SCHEMA, 'CollectionNotFoundError', 'no such collection']);
  const plain = new Error('not from the library');
  assert.equal(TripliteError.from(plain), plain, 'other errors pass through');
});
