#!/usr/bin/env bash
# A throw-away Unleash 7.5.1 + PostgreSQL on loopback, to try fleet mode by hand:
#
#   scripts/unleash/dev.sh [PORT]        # default 4242; Ctrl-C stops both and deletes the data
#
# It prints the environment for `cutover serve` and the admin token for Unleash's Admin API.
# (The UI on http://127.0.0.1:PORT takes admin / unleash4all.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:-4242}
pgport=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
admin='*:*.dev-admin-token'
backend='*:development.dev-backend-token'

"$here/ensure-postgres.sh" >/dev/null
install=$("$here/ensure-server.sh")
dir=$(mktemp -d "${TMPDIR:-/tmp}/cutover-unleash-dev-XXXXXX")
cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  "$here/postgres.sh" stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
db=$("$here/postgres.sh" start "$dir" "$pgport")
node "$here/run-server.mjs" --install "$install" --port "$port" --database-url "$db" \
  --admin-token "$admin" --backend-token "$backend" &
server=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<EOT

Unleash on http://127.0.0.1:$port (PostgreSQL on 127.0.0.1:$pgport, data in $dir)

  export UNLEASH_URL=http://127.0.0.1:$port/api
  export UNLEASH_API_TOKEN='$backend'
  export UNLEASH_ADMIN_TOKEN='$admin'     # optional: lets cutover's admin API change flags in Unleash
  node dist/cli.js serve --routes routes --flags flags-replica-1 --port 8080 --admin-port 9090

Ctrl-C stops Unleash and PostgreSQL and deletes the data.
EOT
wait "$server"
