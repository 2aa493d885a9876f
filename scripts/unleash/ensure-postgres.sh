#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) from Debian's packages are
# installed, and prints the directory that holds them. Idempotent: does nothing when they are
# already there. Installing needs root (CI and the dev machines run as root); without root and
# without PostgreSQL it exits 3 with the reason, so a test can skip loudly.
set -euo pipefail

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then echo "$d"; return 0; fi
  done
  return 1
}

if dir=$(find_bindir); then echo "$dir"; exit 0; fi

if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-postgres: PostgreSQL is not installed and installing it needs root (apt-get install postgresql)" >&2
  exit 3
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-postgres: PostgreSQL is not installed and there is no apt-get to install it" >&2
  exit 3
fi
echo "ensure-postgres: installing Debian's postgresql package" >&2
export DEBIAN_FRONTEND=noninteractive
# The package's postinst creates (and starts, where a service manager runs) a default cluster;
# we never use it: tests start a private cluster of their own (scripts/unleash/postgres.sh).
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends postgresql >&2
if dir=$(find_bindir); then echo "$dir"; exit 0; fi
echo "ensure-postgres: postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2
exit 3
