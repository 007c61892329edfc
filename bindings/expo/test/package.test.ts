/** What `npm pack` ships: an app installing the package gets everything its native build needs. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

test('the package holds the TypeScript build, the Expo module and the bindings it builds from', () => {
  // `prepack` builds and vendors the bindings first.
  const output = execFileSync('npm', ['pack', '--dry-run', '--json', '--silent'], {
    cwd: join(__dirname, '..', '..'),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [pack] = JSON.parse(output) as [{ files: { path: string }[] }];
  const files = new Set(pack.files.map((file) => file.path));
  for (const needed of [
    'expo-module.config.json',
    'build/index.js',
    'build/index.d.ts',
    'build/react.js',
    'build/node.js',
    'ios/TripliteModule.swift',
    'ios/TripliteExpo.podspec',
    'ios/vendor/Triplite/Client.swift',
    'ios/vendor/CTriplite/include/module.modulemap',
    'ios/vendor/CTriplite/include/triplite.h',
    'android/build.gradle',
    'android/src/main/java/dev/triplite/expo/TripliteModule.kt',
    'android/vendor/kotlin/dev/triplite/Client.kt',
  ]) {
    assert.ok(files.has(needed), `${needed} is in the package`);
  }
  assert.ok(![...files].some((file) => file.startsWith('test/') || file.startsWith('.test-build/')), 'no tests in the package');
});
