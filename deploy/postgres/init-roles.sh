#!/usr/bin/env bash
# Runs once, on an empty data directory, as /docker-entrypoint-initdb.d/10-roles.sh
# of the postgres image: creates grodt_migrate (owner of the grodt database and
# its schema, for `grodt migrate`) and grodt_app (DML only, for the services)
# with the passwords of their Compose secrets. An existing data directory is
# not touched: docs/operations.md says how to run roles.sql on one.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v db="$POSTGRES_DB" \
  -v migrate_role=grodt_migrate -v app_role=grodt_app \
  -v migrate_password="$(cat /run/secrets/postgres_migrate_password)" \
  -v app_password="$(cat /run/secrets/postgres_app_password)" \
  -f /etc/grodt/roles.sql
