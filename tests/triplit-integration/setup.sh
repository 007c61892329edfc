#!/usr/bin/env bash
# Prepares Triplit's integration tests to run against `triplite serve`, in target/triplit-integration/
# (outside version control: Triplit's code is AGPL and is never committed here).
#   tests/triplit-integration/setup.sh [TRIPLIT_CHECKOUT]
# TRIPLIT_CHECKOUT: a clone of github.com/aspen-cloud/triplit (default: cloned at the pinned commit).
# It copies packages/integration-tests, points its `tempTriplitServer` at server-triplite.ts, drops
# the workspace references the published packages replace, and installs the pinned npm packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$root/target/triplit-integration"
commit=5505d3a206c4c5282840bb3701b9019540b87a1a
checkout="${1:-$root/target/triplit-src}"
if [ ! -d "$checkout/packages/integration-tests" ]; then
  git clone --quiet https://github.com/aspen-cloud/triplit "$checkout"
  git -C "$checkout" checkout --quiet "$commit"
fi
rm -rf "$work" && mkdir -p "$work"
src="$checkout/packages/integration-tests"
cp -r "$src/tests" "$src/utils" "$src/triplit" "$src/vitest.config.ts" "$src/vitest.setup.ts" "$src/tsconfig.json" "$work/"
mv "$work/utils/server.ts" "$work/utils/server-triplit.ts"
cp "$here/server.ts" "$here/server-triplite.ts" "$work/utils/"
cp "$here/package.json" "$here/package-lock.json" "$work/"
node - "$work" <<'JS'
const fs = require('fs'), path = require('path');
const work = process.argv[2];
// The published packages replace the workspace's sources: no project references.
const tsconfigPath = path.join(work, 'tsconfig.json');
// (The file has comments, so it is edited as text.)
const tsconfig = fs.readFileSync(tsconfigPath, 'utf8');
fs.writeFileSync(tsconfigPath, tsconfig.replace(/,\s*"references"\s*:\s*\[[^\]]*\]/, ''));
// The published client's worker bundle must run through vite-node, as the workspace source does.
const configPath = path.join(work, 'vitest.config.ts');
const config = fs.readFileSync(configPath, 'utf8');
fs.writeFileSync(configPath, config.replace("environment: 'node',", "environment: 'node',\n    server: { deps: { inline: [/@triplit\\/client/] } },"));
JS
(cd "$work" && npm ci --no-audit --no-fund)
echo "ready: tests/triplit-integration/run.sh FILE"
