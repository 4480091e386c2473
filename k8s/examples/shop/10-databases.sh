#!/bin/bash
# Run once by PostgreSQL's entrypoint on an empty data directory: one database and one owner per
# service, with the passwords of the shop-secrets Secret.
set -euo pipefail
for service in users catalog orders; do
  variable="${service^^}_DB_PASSWORD"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
    -c "CREATE ROLE $service LOGIN PASSWORD '${!variable}'" \
    -c "CREATE DATABASE $service OWNER $service"
done
