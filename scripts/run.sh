#!/usr/bin/env bash
# `make run`: every service of the list (scripts/services.py) under gunicorn on embedded
# defaults (SQLite, a generated dev signing key, demo products where a service has them), an
# example flow, and a clean stop on Ctrl-C. Service N listens on <N>_PORT (8001 upward, in the
# list's order) and every service finds it at <N>_URL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR/logs"

command -v curl >/dev/null || apt_install curl
"$ROOT/scripts/venv.sh"
mapfile -t services < <(service_names)

# A service's name as an environment variable prefix: my-svc -> MY_SVC.
variable() { local name=${1^^}; echo "${name//-/_}"; }
random() { "$VENV/bin/python" -c "import secrets; print(secrets.token_urlsafe($1))"; }

# The service clients of the token issuer (the chart's services.N.oauthClient), as "N SCOPES".
mapfile -t clients < <("$VENV/bin/python" "$ROOT/scripts/services.py" json | "$VENV/bin/python" -c '
import json, sys
for name, entry in json.load(sys.stdin).items():
    if entry.get("oauthClient"):
        print(name, (entry["oauthClient"] or {}).get("scopes", ""))
')
# The token issuer (services.N.tokenIssuer): its URL is every token's `iss` (RFC 8414 metadata).
issuer_service=$("$VENV/bin/python" "$ROOT/scripts/services.py" json | "$VENV/bin/python" -c '
import json, sys
print(next((name for name, entry in json.load(sys.stdin).items() if entry.get("tokenIssuer")), ""))
')

# Secrets made once and kept, so a second run finds the same clients and admin; a client added
# to the list gets its secret on the next run.
secrets="$RUN_DIR/secrets.env"
touch "$secrets" && chmod 600 "$secrets"
for client in "${clients[@]}"; do
  key="$(variable "${client%% *}")_CLIENT_SECRET"
  grep -q "^$key=" "$secrets" || echo "$key=$(random 32)" >> "$secrets"
done
grep -q "^ADMIN_PASSWORD=" "$secrets" || echo "ADMIN_PASSWORD=$(random 12)" >> "$secrets"

set -a
# shellcheck disable=SC1090
source "$secrets"
set +a
export FLOTILLA_ENV=development FLOTILLA_DATA_DIR="$RUN_DIR/data" WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}" \
  HOST=127.0.0.1 ADMIN_EMAIL=admin@flotilla.local
ports=() client_ids=()
for index in "${!services[@]}"; do
  prefix=$(variable "${services[$index]}")
  port_var="${prefix}_PORT"
  ports+=("${!port_var:-$((8001 + index))}")
  export "${prefix}_URL=http://127.0.0.1:${ports[$index]}"
  [ "${services[$index]}" != "$issuer_service" ] || export "JWT_ISSUER=http://127.0.0.1:${ports[$index]}"
done
for client in "${clients[@]}"; do
  name=${client%% *} scopes=${client#* }
  [ "$scopes" != "$client" ] || scopes=""
  secret_var="$(variable "$name")_CLIENT_SECRET"
  client_ids+=("$name")
  export "OAUTH_CLIENT_$(variable "$name")_SECRET=${!secret_var}" "OAUTH_CLIENT_$(variable "$name")_SCOPES=$scopes"
done
OAUTH_CLIENTS=$(IFS=,; echo "${client_ids[*]}")
export OAUTH_CLIENTS

for index in "${!services[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/${ports[$index]}") 2>/dev/null; then
    die "port ${ports[$index]} is taken (another 'make run'?); set $(for s in "${services[@]}"; do printf '%s_PORT ' "$(variable "$s")"; done | xargs | tr ' ' /)"
  fi
done

# The services with a database (the chart's services.N.database), migrated before they start.
mapfile -t with_database < <("$VENV/bin/python" "$ROOT/scripts/services.py" json | "$VENV/bin/python" -c '
import json, sys
for name, entry in json.load(sys.stdin).items():
    if entry.get("database"):
        print(name)
')
step "migrating the databases (SQLite under ${RUN_DIR#"$ROOT"/}/data)"
for service in "${with_database[@]}"; do
  "$VENV/bin/flotilla-$service" migrate
done
for service in "${services[@]}"; do
  # Demo data only where the service has a seed-demo command.
  if "$VENV/bin/flotilla-$service" --help | grep -qE '^ +seed-demo( |$)'; then
    "$VENV/bin/flotilla-$service" seed-demo
  fi
done

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
for index in "${!services[@]}"; do
  service=${services[$index]}
  # setsid: Ctrl-C reaches this script, which stops gunicorn gracefully (SIGTERM), not gunicorn.
  PORT="${ports[$index]}" setsid "$VENV/bin/flotilla-$service" serve >"$RUN_DIR/logs/$service.log" 2>&1 &
  pids+=($!)
done
for index in "${!services[@]}"; do
  service=${services[$index]}
  wait_for_url "http://127.0.0.1:${ports[$index]}/readyz" "$service" 60 "${pids[$index]}" || {
    tail -n 20 "$RUN_DIR/logs/$service.log" >&2
    die "$service did not become ready"
  }
done

echo
echo "Flotilla is running:"
for index in "${!services[@]}"; do
  url="http://127.0.0.1:${ports[$index]}"
  printf '  %-8s %s    (API page: %s/docs)\n' "${services[$index]}" "$url" "$url"
done
printf '  %-8s %s / %s\n' admin "$ADMIN_EMAIL" "$ADMIN_PASSWORD"
printf '  %-8s %s\n\n' metrics "<service URL>/metrics, health <service URL>/livez and /readyz"
"$ROOT/scripts/demo-flow.sh" || note "the example flow failed (see above); the services keep running"
echo
step "running; press Ctrl-C to stop (logs: tail -f ${RUN_DIR#"$ROOT"/}/logs/*.log)"
wait "${pids[@]}"
