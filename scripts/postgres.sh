#!/usr/bin/env bash
# A local PostgreSQL for tests and benchmarks: installed from apt when missing, its own
# cluster on 127.0.0.1:${FLOTILLA_PG_PORT:-54329}, one database per service.
#   scripts/postgres.sh up      install if needed, start (or reuse), create the databases
#   scripts/postgres.sh down    stop it and remove its data
#   scripts/postgres.sh url     print the server URL (without a database name)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT="${FLOTILLA_PG_PORT:-54329}"
DATA="${FLOTILLA_PG_DIR:-/var/tmp/flotilla-postgres-$(id -u)}"
ROLE=flotilla
DATABASES=(flotilla_users flotilla_catalog flotilla_orders)

# PostgreSQL refuses to run as root; root runs it as the 'postgres' user the package creates.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] && echo "$bin"
}

psql_admin() {
  "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres "$@"
}

up() {
  if [ -z "$(pg_bin)" ]; then
    no_main_postgres_cluster
    apt_install postgresql
  fi
  local bin; bin=$(pg_bin)
  if as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    note "PostgreSQL already running on 127.0.0.1:$PORT ($DATA)"
  else
    if [ ! -f "$DATA/PG_VERSION" ]; then
      step "creating a PostgreSQL cluster in $DATA"
      mkdir -p "$DATA"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DATA"
      chmod 700 "$DATA"
      as_pg "$bin/initdb" -D "$DATA" -U "$ROLE" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    step "starting PostgreSQL on 127.0.0.1:$PORT"
    as_pg "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k '$DATA' -c max_connections=300" >/dev/null \
      || { tail -n 20 "$DATA/server.log" >&2; die "PostgreSQL did not start"; }
  fi
  for db in "${DATABASES[@]}"; do
    if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      psql_admin -c "CREATE DATABASE $db"
      note "created database $db"
    fi
  done
}

down() {
  local bin; bin=$(pg_bin) || return 0
  if [ -f "$DATA/PG_VERSION" ]; then
    as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DATA"
    note "PostgreSQL stopped and its data removed"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  url) echo "postgresql+psycopg://$ROLE@127.0.0.1:$PORT" ;;
  *) echo "usage: $0 up|down|url" >&2; exit 2 ;;
esac
