#!/usr/bin/env bash
# run.sh - official Azure IoT device SDK compatibility tests (ctest: compat).
#
# Installs the pinned SDK from package-lock.json with `npm ci` (into
# tests/compat/node_modules, gitignored; needs the npm registry, or npm's
# cache), then runs the tests with Node's built-in runner. Each test starts its
# own mosquitto with the plugin behind a TLS listener (lib/harness.js).
#
# Environment: TWIN_PLUGIN, MOSQUITTO, TWIN_SANITIZE as for the integration
# tests (set by ctest); TWIN_COMPAT_KEEP=1 keeps the temporary directory.
# Needs node >= 18 with npm, and openssl. Exit status: 0 when every test passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

for tool in node npm openssl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "compat: $tool not found (Debian 12: apt-get install nodejs npm openssl)" >&2
		exit 1
	fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if ((major < 18)); then
	echo "compat: node $(node --version) is too old, need >= 18" >&2
	exit 1
fi

echo "== compat: node $(node --version), npm $(npm --version 2>/dev/null)"
npm ci --no-audit --no-fund --prefer-offline --loglevel=error </dev/null
exec node --test test/*.test.js </dev/null
