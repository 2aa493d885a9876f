#!/usr/bin/env bash
# Makes sure a headless-capable Chromium is at /usr/bin/chromium for the dashboard browser test
# (test/admin/dashboard.test.ts drives it through playwright-core). Idempotent: does nothing when
# it is already there. Installs Debian's `chromium` package when we are root and apt-get exists;
# otherwise says so and exits 0 — the test then skips with a loud message instead of failing.
set -uo pipefail

BIN="${CUTOVER_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$BIN" ]; then
  echo "ensure-chromium: $BIN present ($("$BIN" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "ensure-chromium: $BIN missing and not root: not installing; the dashboard browser test will SKIP" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $BIN missing and no apt-get: not installing; the dashboard browser test will SKIP" >&2
  exit 0
fi

echo "ensure-chromium: $BIN missing; running: apt-get update && apt-get install -y --no-install-recommends chromium"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; then
  echo "ensure-chromium: installed $("$BIN" --version 2>/dev/null || echo "$BIN")"
else
  echo "ensure-chromium: apt-get failed; the dashboard browser test will SKIP" >&2
fi
exit 0
