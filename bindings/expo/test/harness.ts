/**
 * What the tests run against: the real library (`target/release/libtriplite.so`, from `cargo
 * build --release`) through koffi, and a `triplite serve` of the same build on loopback.
 * `TRIPLITE_LIBRARY` and `TRIPLITE_BINARY` point elsewhere.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { TripliteClient, type Collections, type TripliteClientOptions } from '../src/index';
import { nodeNativeModule } from '../src/node';

function repositoryRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'Cargo.toml'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('no Cargo.toml above the tests: run them inside the triplite repository');
    dir = parent;
  }
  return dir;
}

const release = join(repositoryRoot(), 'target', 'release');
const libraryName = process.platform === 'darwin' ? 'libtriplite.dylib' : process.platform === 'win32' ? 'triplite.dll' : 'libtriplite.so';
export const libraryPath = process.env.TRIPLITE_LIBRARY ?? join(release, libraryName);
const binaryPath = process.env.TRIPLITE_BINARY ?? join(release, 'triplite');
for (const path of [libraryPath, binaryPath]) {
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`cargo build --release\` at the repository's root first`);
}

/** One native module for the whole test process, as an app has one. */
export const nativeModule = nodeNativeModule(libraryPath);

const rule = { filter: [['owner', '=', '$role.userId']] };
export const collections: Collections = {
  todos: {
    schema: {
      type: 'record',
      properties: {
        id: { type: 'string', config: { default: { func: 'nanoid', args: null } } },
        text: { type: 'string' },
        owner: { type: 'string' },
        tags: { type: 'set', items: { type: 'string' }, config: { optional: true } },
        due: { type: 'date', config: { optional: true } },
      },
    },
    permissions: { user: { read: rule, insert: rule, update: rule, postUpdate: rule, delete: rule } },
  } as Collections[string],
};
export const roles = { user: { match: { sub: '$userId' } } };

const secret = 'expo-binding-test-secret-0123456789';

/** A user's token as an identity provider signs it (HS256 with the server's secret). */
export function userToken(user: string, expiresInSeconds = 3600): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ sub: user, exp: Math.floor(Date.now() / 1000) + expiresInSeconds })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

export interface Server {
  url: string;
  stop(): Promise<void>;
}

/** Starts `triplite serve` in memory with the tests' schema, on a free loopback port. */
export async function startServer(): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'triplite-expo-'));
  const schemaPath = join(dir, 'schema.json');
  writeFileSync(schemaPath, JSON.stringify({ collections, roles }));
  const child: ChildProcess = spawn(binaryPath, ['serve', '--storage', 'memory', '--schema', schemaPath], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', JWT_SECRET: secret },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('triplite serve did not start in 60 s')), 60_000);
    child.once('exit', (code) => reject(new Error(`triplite serve exited with ${code}`)));
    // Reads the log until the process ends, so the pipe never fills.
    createInterface({ input: child.stderr! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { message?: string; addr?: string };
        if (entry.message === 'listening' && entry.addr) {
          clearTimeout(timer);
          resolve(`http://${entry.addr}`);
        }
      } catch {
        // not a JSON log line
      }
    });
  });
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

/** A client of the tests' schema over the real library; closed by the caller. */
export function client(server: Server, options: TripliteClientOptions = {}): TripliteClient {
  return new TripliteClient({ serverUrl: server.url, schema: collections, roles, nativeModule, ...options });
}

/** A temporary SQLite file for a client's storage. */
export function databaseFile(): string {
  return join(mkdtempSync(join(tmpdir(), 'triplite-expo-db-')), 'app.db');
}

/** Resolves once `condition` holds (the server's answers arrive on the client's threads). */
export async function eventually(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
