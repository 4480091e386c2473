#!/usr/bin/env bash
# `make run`: the three services under gunicorn on embedded defaults (SQLite, a generated dev
# signing key, demo products), an example flow, and a clean stop on Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUN_DIR="$ROOT/.run"
USERS_PORT="${USERS_PORT:-8001}"
CATALOG_PORT="${CATALOG_PORT:-8002}"
ORDERS_PORT="${ORDERS_PORT:-8003}"
mkdir -p "$RUN_DIR/logs"

command -v curl >/dev/null || apt_install curl
"$ROOT/scripts/venv.sh"

# Secrets made once and kept, so a second run finds the same clients and admin.
secrets="$RUN_DIR/secrets.env"
if [ ! -f "$secrets" ]; then
  umask 077
  {
    echo "ORDERS_CLIENT_SECRET=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
    echo "ADMIN_PASSWORD=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')"
  } > "$secrets"
fi
set -a
# shellcheck disable=SC1090
source "$secrets"
FLOTILLA_ENV=development
FLOTILLA_DATA_DIR="$RUN_DIR/data"
WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"
HOST=127.0.0.1
USERS_URL="http://127.0.0.1:$USERS_PORT"
CATALOG_URL="http://127.0.0.1:$CATALOG_PORT"
ORDERS_URL="http://127.0.0.1:$ORDERS_PORT"
OAUTH_CLIENTS=orders
OAUTH_CLIENT_ORDERS_SECRET="$ORDERS_CLIENT_SECRET"
OAUTH_CLIENT_ORDERS_SCOPES="reservations:write"
ADMIN_EMAIL=admin@flotilla.local
set +a

for port in "$USERS_PORT" "$CATALOG_PORT" "$ORDERS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is taken (another 'make run'?); set USERS_PORT/CATALOG_PORT/ORDERS_PORT"
  fi
done

step "migrating the databases (SQLite under ${RUN_DIR#"$ROOT"/}/data)"
"$VENV/bin/flotilla-users" migrate
"$VENV/bin/flotilla-catalog" migrate
"$VENV/bin/flotilla-orders" migrate
"$VENV/bin/flotilla-catalog" seed-demo

pids=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    step "stopping the services"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    note "all stopped"
  fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM

step "starting the services under gunicorn ($WEB_CONCURRENCY workers each); logs in ${RUN_DIR#"$ROOT"/}/logs"
for service in users catalog orders; do
  port_var="${service^^}_PORT"
  # setsid: Ctrl-C reaches this script, which stops gunicorn gracefully (SIGTERM), not gunicorn.
  PORT="${!port_var}" setsid "$VENV/bin/flotilla-$service" serve >"$RUN_DIR/logs/$service.log" 2>&1 &
  pids+=($!)
done
for index in 0 1 2; do
  service=$(echo users catalog orders | cut -d' ' -f$((index + 1)))
  url_var="${service^^}_URL"
  wait_for_url "${!url_var}/readyz" "$service" 60 "${pids[$index]}" || {
    tail -n 20 "$RUN_DIR/logs/$service.log" >&2
    die "$service did not become ready"
  }
done

cat <<EOT

Flotilla is running:
  users    $USERS_URL    (OpenAPI: $USERS_URL/openapi.json)
  catalog  $CATALOG_URL    (OpenAPI: $CATALOG_URL/openapi.json)
  orders   $ORDERS_URL    (OpenAPI: $ORDERS_URL/openapi.json)
  admin    $ADMIN_EMAIL / $ADMIN_PASSWORD
  metrics  <service URL>/metrics, health <service URL>/livez and /readyz

EOT
"$ROOT/scripts/demo-flow.sh" || note "the example flow failed (see above); the services keep running"
echo
step "running; press Ctrl-C to stop (logs: tail -f ${RUN_DIR#"$ROOT"/}/logs/*.log)"
wait "${pids[@]}"
