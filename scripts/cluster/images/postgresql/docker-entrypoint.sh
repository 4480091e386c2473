#!/bin/bash
# On an empty PGDATA: initdb with POSTGRES_USER and POSTGRES_PASSWORD, run the scripts of
# /docker-entrypoint-initdb.d (*.sh with bash, *.sql with psql) on a socket-only server, stop it.
# Then run PostgreSQL listening on every address, password (SCRAM) authentication for TCP.
set -euo pipefail

if [ "${1:-}" = postgres ]; then
  shift
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start
    export PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER"
    for script in /docker-entrypoint-initdb.d/*; do
      case $script in
        *.sh) echo "running $script"; bash "$script" ;;
        *.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 -f "$script" ;;
        *) ;;
      esac
    done
    unset PGHOST PGUSER
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL initialised in $PGDATA"
  fi
  exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
