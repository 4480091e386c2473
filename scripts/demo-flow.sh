#!/usr/bin/env bash
# The example flow against running services: register, log in, list products, order, read it.
# Each step prints the exact command it runs (copy it to try it yourself) and the answer.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export USERS_URL="${USERS_URL:-http://127.0.0.1:8001}"
export CATALOG_URL="${CATALOG_URL:-http://127.0.0.1:8002}"
export ORDERS_URL="${ORDERS_URL:-http://127.0.0.1:8003}"
export EMAIL="demo-$(date +%s)-$RANDOM@example.com"
export KEY="demo-$(date +%s)-$RANDOM"
export PATH="$VENV/bin:$PATH"

# Print a command as typed, run it, and show its output; fail the flow on an HTTP error.
shown() {
  printf '\n$ %s\n' "$1"
  eval "$1"
}

step "example flow"
note "EMAIL=$EMAIL KEY=$KEY"
shown 'curl -sS --fail-with-body -X POST "$USERS_URL/users/register" -H "Content-Type: application/json" -d "{\"email\": \"$EMAIL\", \"password\": \"correct horse battery\", \"name\": \"Demo Customer\"}"'
shown 'TOKEN=$(curl -sS --fail-with-body -X POST "$USERS_URL/auth/login" -H "Content-Type: application/json" -d "{\"email\": \"$EMAIL\", \"password\": \"correct horse battery\"}" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"access_token\"])"); echo "${TOKEN:0:32}..."'
shown 'curl -sS --fail-with-body "$CATALOG_URL/products?limit=2"'
# Order whichever product has the most stock left, so that repeated runs keep working.
export PRODUCT_ID=$(curl -sS --fail-with-body "$CATALOG_URL/products?limit=200" \
  | python3 -c "import json,sys; print(max(json.load(sys.stdin)['items'], key=lambda p: p['stock'])['id'])")
shown 'ORDER_ID=$(curl -sS --fail-with-body -X POST "$ORDERS_URL/orders" -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -H "Idempotency-Key: $KEY" -d "{\"items\": [{\"product_id\": $PRODUCT_ID, \"quantity\": 2}]}" | tee -a /dev/stderr | python3 -c "import json,sys; print(json.load(sys.stdin)[\"id\"])")'
shown 'curl -sS --fail-with-body "$ORDERS_URL/orders/$ORDER_ID" -H "Authorization: Bearer $TOKEN"'
