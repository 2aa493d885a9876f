#!/usr/bin/env bash
# Installs the pinned unleash-server (scripts/unleash/server/package-lock.json) into a cache
# directory outside the work tree and prints that directory. Idempotent and cheap when already
# installed; keyed by the lockfile's hash, so a changed pin installs afresh.
#
# Why not a devDependency: unleash-server brings ~340 packages (~190 MB, express, knex, pg,
# nodemailer, ssh2, ...) that only this integration test needs; keeping them out of the
# project's lockfile keeps `npm ci`, audits and the dependency tree of everyone else small,
# while the separate lockfile still pins every version.
#
# CUTOVER_CACHE_DIR overrides the cache root (default: $XDG_CACHE_HOME/cutover or ~/.cache/cutover).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/server"
hash=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)
root=${CUTOVER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cutover}
dest="$root/unleash-server-7.5.1-$hash"

if [[ -f "$dest/.installed" && -f "$dest/node_modules/unleash-server/package.json" ]]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$root"
# Install into a fresh temp dir, then rename into place: concurrent callers and interrupted
# installs never leave a half-installed directory behind at $dest.
tmp=$(mktemp -d "$root/.install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$src/package.json" "$src/package-lock.json" "$tmp/"
echo "ensure-server: installing unleash-server 7.5.1 into $dest (first run only)" >&2
# --ignore-scripts: nothing it needs has an install step (the scripts are optional native
# speed-ups of ssh2 and a telemetry ping).
(cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
touch "$tmp/.installed"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
  # Someone else finished first: theirs is as good as ours.
  [[ -f "$dest/.installed" ]] || { echo "ensure-server: cannot move the install into $dest" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
echo "$dest"
