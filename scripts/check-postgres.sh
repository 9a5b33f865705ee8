#!/bin/sh
# Says clearly when the PostgreSQL server binaries the tests need are missing.
set -eu
for dir in "${PGMS_PG_BIN:-}" $(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)") /usr/lib/postgresql/*/bin; do
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
    exit 0
  fi
done
echo "PostgreSQL server binaries (initdb, postgres) not found." >&2
echo "Install them, e.g.: apt-get install -y postgresql   (or set PGMS_PG_BIN to their directory)" >&2
exit 1
