#!/bin/sh
# tests/browser/run.sh - the ctest entry of the browser test (label
# browser): checks that node and chromium are there, installs
# playwright-core into tests/browser/node_modules from package-lock.json
# when it is missing, then runs page_test.mjs. Exits 77 (ctest's
# SKIP_RETURN_CODE) when something it needs is missing, so that a machine
# without a browser skips the test instead of failing it.
#
# Environment (set by CMakeLists.txt): DEMIXD_BIN, DEMIX_TEST_DATA,
# DEMIX_WEB_DIR, DEMIX_ARTIFACT_DIR; CHROMIUM overrides /usr/bin/chromium.
set -u
here=$(cd "$(dirname "$0")" && pwd)
skip() {
  echo "SKIP: $*"
  exit 77
}

command -v node >/dev/null 2>&1 || skip "node is not installed (scripts/install-deps.sh installs it)"
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || skip "$chromium is not installed (scripts/install-deps.sh installs chromium)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || skip "node $node_major is older than 20 (playwright-core needs 20)"

if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
  command -v npm >/dev/null 2>&1 || skip "npm is not installed and tests/browser/node_modules is missing"
  echo "installing playwright-core into $here/node_modules (npm ci)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) ||
    skip "npm ci failed (no registry?); run it in tests/browser by hand"
fi

export CHROMIUM="$chromium"
exec node "$here/page_test.mjs"
