#!/usr/bin/env bash
# The one test command: installs what a fresh machine lacks, starts the real services the
# end-to-end tests use (Docker engine, registry with auth), and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v pnpm >/dev/null || npm install -g pnpm@10
pnpm install --frozen-lockfile
# the controller serves the dashboard from its build; the browser tests load it from there
pnpm --filter @deploybot/dashboard build

if [ "$(id -u)" = 0 ] || [ "${CI:-}" = "true" ]; then
  bash scripts/test-services.sh
else
  bash scripts/test-services.sh || echo "!!! test services could not start: Docker end-to-end tests will SKIP" >&2
fi
if [ -f .state/test-services.env ]; then
  set -a
  # shellcheck disable=SC1091
  . .state/test-services.env
  set +a
fi

mkdir -p .state
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=.state/vitest.json "$@" || status=$?
node -e '
  const r = require("./.state/vitest.json");
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests ?? 0)} skipped`);
' || true
exit "$status"
