#!/usr/bin/env bash
# The page's checks, as CI runs them: its types against the service's OpenAPI schema, the
# component tests, the production build, and the real-browser tests against the real service
# on the demo model (a local store; then a gs:// store on the Cloud Storage emulator).
# Needs .venv (scripts/setup.sh) and Node 20+ with npm.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  echo "test-frontend: installing Debian chromium for the browser test" >&2
  sudo=""; [[ $EUID -ne 0 ]] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

cd frontend
npm ci --no-audit --no-fund
npm run check:api   # the committed API types still match the service
npm test            # vitest: components, by role and label, fetch faked
npm run build       # tsc --noEmit against the generated types, then vite build into dist/
npm run e2e         # chromium + the real service serving dist/ at /app/ (e2e/*.e2e.mjs)
