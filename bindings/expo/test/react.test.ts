/** The React hooks rendering live results from the real library, with react-test-renderer. */
import { after, before, test } from 'node:test';
import { createElement } from 'react';
import TestRenderer, { act } from 'react-test-renderer';
import type { TripliteClient } from '../src/index';
import { useConnectionStatus, useEntity, useQuery } from '../src/react';
import { client, eventually, startServer, userToken, type Server } from './harness';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

function Todos({ app }: { app: TripliteClient }) {
  const { results, fetching } = useQuery(app, app.query('todos').Order('text', 'ASC'));
  const { result: first } = useEntity(app, 'todos', 'first');
  const status = useConnectionStatus(app);
  const items = (results ?? []).map((todo) => todo.text as string).join(',');
  return createElement('text', null, `${status}|${fetching ? 'fetching' : 'ready'}|${items}|${(first?.text as string) ?? '-'}`);
}

test('useQuery, useEntity and useConnectionStatus render live results', async () => {
  const app = client(server, { token: userToken('kim') });
  const writer = client(server, { token: userToken('kim') });
  let renderer!: TestRenderer.ReactTestRenderer;
  await act(async () => {
    renderer = TestRenderer.create(createElement(Todos, { app }));
  });
  const rendered = () => (renderer.toJSON() as { children: string[] } | null)?.children?.[0] ?? '';
  const settle = () => act(() => new Promise((resolve) => setTimeout(resolve, 20)));

  await eventually('the hooks report the open, answered query', async () => {
    await settle();
    return rendered() === 'OPEN|ready||-';
  });
  await writer.insert('todos', { id: 'first', text: 'from another client', owner: 'kim' });
  await app.insert('todos', { text: 'local', owner: 'kim' });
  await eventually('both writes render', async () => {
    await settle();
    return rendered() === 'OPEN|ready|from another client,local|from another client';
  });
  await act(async () => renderer.unmount());
  await Promise.all([app.close(), writer.close()]);
});
