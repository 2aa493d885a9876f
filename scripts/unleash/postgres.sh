#!/usr/bin/env bash
# A private, throw-away PostgreSQL cluster on loopback for tests and local fleet trials.
#
#   postgres.sh start DIR PORT   initdb in DIR/data, start on 127.0.0.1:PORT (socket in DIR),
#                                create role + database "unleash" (trust auth, loopback only)
#   postgres.sh stop DIR         stop it at once (immediate) and leave DIR for the caller to remove
#
# As root, the cluster runs as the "postgres" user (PostgreSQL refuses to run as root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: postgres.sh start DIR PORT | stop DIR}
dir=${2:?DIR missing}
bindir=$("$here/ensure-postgres.sh")

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    port=${3:?PORT missing}
    mkdir -p "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
      as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync off: a test cluster that is thrown away needs no durability, and it is much faster.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
    as_owner "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
      -c "CREATE ROLE unleash LOGIN" -c "CREATE DATABASE unleash OWNER unleash" >/dev/null
    echo "postgres://unleash@127.0.0.1:$port/unleash"
    ;;
  stop)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    ;;
  *)
    echo "usage: postgres.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
