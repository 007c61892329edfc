// The integration tests' `tempTriplitServer`, replaced: it starts `triplite serve --storage memory`
// ($TRIPLITE_BIN, set by run.sh) as a child process on a free loopback port, with the secrets the
// test gives, and pushes the test's schema with `POST /override-schema` as `triplit schema push` does.
import { spawn, ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_ROLES } from '@triplit/db';
import { generateServiceToken } from './token.js';
import { expect } from 'vitest';

const BIN = process.env.TRIPLITE_BIN ?? 'triplite';
const LOG_DIR = process.env.TRIPLITE_LOG_DIR ?? 'logs';
// 'push' (default): POST /override-schema after start; 'flag': --schema <file>
const SCHEMA_MODE = process.env.TRIPLITE_SCHEMA_MODE ?? 'push';

const usedPorts = new Set<number>();
let serial = 0;
// Servers a test never disposes (e.g. sessions.spec.ts's refresh-handler test) are killed when
// the worker exits; run.sh also kills any pid left in $TRIPLITE_LOG_DIR/pids.
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

async function waitHealthy(port: number, child: ChildProcess, logFile: string) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(
        `triplite exited with ${child.exitCode}: ${fs.readFileSync(logFile, 'utf8')}`
      );
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthcheck`);
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`triplite on port ${port} not healthy after 10s`);
}

export async function tempTriplitServer(
  options: { serverOptions?: any; port?: number } = {}
) {
  const serverOptions = options.serverOptions ?? {};
  let port = options.port ?? (await freePort());
  while (!options.port && usedPorts.has(port)) port = await freePort();
  usedPorts.add(port);

  const jwtSecret: string = serverOptions.jwtSecret ?? process.env.JWT_SECRET;
  const externalJwtSecret: string | undefined =
    serverOptions.externalJwtSecret ?? process.env.EXTERNAL_JWT_SECRET;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: String(port),
    HOST: '127.0.0.1',
    JWT_SECRET: jwtSecret,
  };
  if (externalJwtSecret) env.EXTERNAL_JWT_SECRET = externalJwtSecret;
  const projectId = serverOptions.projectId ?? process.env.PROJECT_ID;
  if (projectId) env.PROJECT_ID = projectId;
  const claimsPath = serverOptions.claimsPath ?? process.env.CLAIMS_PATH;
  if (claimsPath) env.CLAIMS_PATH = claimsPath;
  if (process.env.RUST_LOG) env.RUST_LOG = process.env.RUST_LOG;
  for (const k of Object.keys(serverOptions)) {
    if (!['jwtSecret', 'externalJwtSecret', 'dbOptions', 'logHandler', 'projectId', 'claimsPath'].includes(k))
      console.warn(`[triplite-it] serverOptions.${k} is not mapped to triplite`);
  }

  fs.mkdirSync(LOG_DIR, { recursive: true });
  const tag = `${process.pid}-${++serial}-${port}`;
  const logFile = path.join(LOG_DIR, `server-${tag}.log`);
  const args = ['serve', '--storage', 'memory'];

  let schema = serverOptions.dbOptions?.schema;
  let schemaJson: any = undefined;
  if (schema) {
    schemaJson = JSON.parse(JSON.stringify(schema));
    if (SCHEMA_MODE === 'flag') {
      if (schemaJson.collections && !schemaJson.roles) schemaJson.roles = DEFAULT_ROLES;
      const schemaFile = path.join(LOG_DIR, `schema-${tag}.json`);
      fs.writeFileSync(schemaFile, JSON.stringify(schemaJson, null, 1));
      args.push('--schema', schemaFile);
    }
  }
  fs.writeFileSync(logFile, `# ${BIN} ${args.join(' ')} env=${JSON.stringify(env)}\n# test: ${expect.getState().currentTestName ?? '?'}\n`);
  const out = fs.openSync(logFile, 'a');
  const child = spawn(BIN, args, { env, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  children.add(child);
  child.once('exit', () => children.delete(child));
  fs.appendFileSync(path.join(LOG_DIR, 'pids'), `${child.pid}\n`);
  await waitHealthy(port, child, logFile);

  if (schemaJson && SCHEMA_MODE === 'push') {
    const token = await generateServiceToken(jwtSecret);
    const r = await fetch(`http://127.0.0.1:${port}/override-schema`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ schema: schemaJson }),
    });
    const text = await r.text();
    fs.appendFileSync(logFile, `# override-schema -> ${r.status} ${text}\n`);
    let ok = r.ok;
    try { ok = ok && JSON.parse(text).successful !== false; } catch { ok = false; }
    if (!ok) {
      child.kill('SIGKILL');
      throw new Error(`override-schema failed: ${r.status} ${text}`);
    }
  }

  const exited = new Promise<void>((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    else child.once('exit', () => res());
  });
  const close = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    setTimeout(() => usedPorts.delete(port), 1000);
  };
  return {
    port,
    _server: { close, child, logFile },
    logFile,
    [Symbol.dispose]: close,
    [Symbol.asyncDispose]: async () => {
      close();
      await exited;
    },
  };
}
