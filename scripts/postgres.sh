#!/usr/bin/env bash
# Sourced by scripts/test.sh: makes a PostgreSQL server available to the tests and exports
# VERILIMIT_TEST_PG (an admin URL whose user may CREATE DATABASE).
#   1. VERILIMIT_TEST_PG if already set;
#   2. this machine's server at 127.0.0.1:5432 (trust auth, database test), started with
#      pg_ctlcluster if installed but stopped;
#   3. otherwise a throwaway cluster from the system's PostgreSQL binaries (installing the
#      Debian package if needed) on port 55432, stopped again by cleanup_postgres.
# It never lets the tests pass by skipping: if none of this works, it fails saying what to provide.

PG_TMP_CLUSTER=""

pg_reachable() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

pg_binaries() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres() {
  if [ -n "${VERILIMIT_TEST_PG:-}" ]; then
    echo "PostgreSQL: using VERILIMIT_TEST_PG"
    return 0
  fi
  export VERILIMIT_TEST_PG="postgres://postgres@127.0.0.1:5432/test"
  if pg_reachable 127.0.0.1 5432; then
    echo "PostgreSQL: using the server on 127.0.0.1:5432"
    return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    local v
    v=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null || true
    for _ in $(seq 1 50); do pg_reachable 127.0.0.1 5432 && break; sleep 0.2; done
    if pg_reachable 127.0.0.1 5432; then
      echo "PostgreSQL: started the local cluster $v/main"
      return 0
    fi
  fi
  local bin
  bin=$(pg_binaries)
  if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL: installing the Debian package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || true
    bin=$(pg_binaries)
  fi
  if [ -z "$bin" ]; then
    echo "PostgreSQL is needed by the scale-out tests and none is reachable: set VERILIMIT_TEST_PG" >&2
    echo "to a postgres:// URL of a user that may CREATE DATABASE, or install PostgreSQL." >&2
    return 1
  fi
  PG_TMP_CLUSTER=$(mktemp -d /tmp/verilimit-pg.XXXXXX)
  local as=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$PG_TMP_CLUSTER" 2>/dev/null || { useradd -r postgres 2>/dev/null; chown postgres "$PG_TMP_CLUSTER"; }
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$PG_TMP_CLUSTER/data" -U postgres -A trust >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$PG_TMP_CLUSTER/data" -o "-p 55432 -k $PG_TMP_CLUSTER -c listen_addresses=127.0.0.1" -l "$PG_TMP_CLUSTER/log" -w start >/dev/null
  "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p 55432 -U postgres test
  export VERILIMIT_TEST_PG="postgres://postgres@127.0.0.1:55432/test"
  echo "PostgreSQL: throwaway cluster on 127.0.0.1:55432"
}

# Prints the URL of a new, empty database NAME (prefixed verilimit_t_, so cleanup drops it).
fresh_pg_database() {
  local psql_bin name="verilimit_t_$1"
  psql_bin=$(command -v psql || echo "$(pg_binaries)/psql")
  "$psql_bin" "$VERILIMIT_TEST_PG" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1
  "$psql_bin" "$VERILIMIT_TEST_PG" -qc "CREATE DATABASE $name" >/dev/null
  echo "${VERILIMIT_TEST_PG%/*}/$name"
}

cleanup_postgres() {
  # Drop the databases the tests made (servers are gone by now).
  if command -v psql >/dev/null 2>&1 && [ -n "${VERILIMIT_TEST_PG:-}" ]; then
    psql "$VERILIMIT_TEST_PG" -Atqc "SELECT 'DROP DATABASE IF EXISTS ' || quote_ident(datname) || ' WITH (FORCE);' FROM pg_database WHERE datname LIKE 'verilimit\_t\_%'" 2>/dev/null |
      psql "$VERILIMIT_TEST_PG" -q >/dev/null 2>&1 || true
  fi
  if [ -n "$PG_TMP_CLUSTER" ]; then
    local as=()
    [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    "${as[@]}" "$(pg_binaries)/pg_ctl" -D "$PG_TMP_CLUSTER/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP_CLUSTER"
  fi
}
