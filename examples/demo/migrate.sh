#!/bin/sh
# The demo's migration: creates the application's tables in each new shard.
# pgms runs it after creating shard schemas and before activating them, with
# the node in the libpq variables (PGHOST, PGPORT, PGDATABASE, PGUSER) and the
# new schemas, comma-separated, in PGMS_SCHEMAS.
set -eu
IFS=','
for schema in $PGMS_SCHEMAS; do
  psql -v ON_ERROR_STOP=1 -q -v schema="$schema" <<'SQL'
SET search_path = :"schema";
CREATE TABLE IF NOT EXISTS users (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS users_email ON users (email);
CREATE TABLE IF NOT EXISTS orders (
  id bigserial PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users (id),
  total_cents integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id);
SQL
done
