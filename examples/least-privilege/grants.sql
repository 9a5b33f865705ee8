-- Least privilege for pgms: the grants a role that is not a superuser
-- needs to install the library, allocate, activate, move and clean up, on
-- PostgreSQL 13 to 18. The README's "Least privilege" says why each one.
--
-- Run it as a superuser (or the managed service's administrator role) on
-- every node, connected to the application's database, once the role
-- exists:
--
--   CREATE ROLE pgms LOGIN PASSWORD '…';   -- SCRAM: password_encryption = scram-sha-256
--   psql "host=… dbname=app user=postgres" -v ON_ERROR_STOP=1 -f grants.sql
--
-- It names the role pgms; replace that name throughout to use another.
-- Then let pgms install the library (pgms install, or apply): the role then
-- owns the library, the shards it allocates and its journal.

-- Moves out of this node: the move's logical replication slot.
ALTER ROLE pgms REPLICATION;

-- The library's schema, shard schemas, the moves' publications, the rename
-- of a moved shard's schema; from PostgreSQL 16, subscriptions too.
DO $$
BEGIN
  EXECUTE format('GRANT CREATE ON DATABASE %I TO pgms', current_database());
END
$$;

-- Moves out of this node: the cutover waits for the node's standbys, whose
-- progress pg_stat_replication shows only to pg_read_all_stats.
GRANT pg_read_all_stats TO pgms;

-- Moves into this node: its subscription. PostgreSQL 16 lets a role of
-- pg_create_subscription create one (the source's DSN, or its
-- publisher_dsn, must then hold a password, and the source must ask for
-- it). Before 16 only a superuser may: nodes that receive shards need
-- ALTER ROLE pgms SUPERUSER (or the managed service's equivalent).
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 160000 THEN
    EXECUTE 'GRANT pg_create_subscription TO pgms';
  ELSE
    RAISE NOTICE 'PostgreSQL % creates subscriptions for superusers only: for this node to receive shards, ALTER ROLE pgms SUPERUSER', current_setting('server_version');
  END IF;
END
$$;

-- PostgreSQL 15 and later: the statement creating a move's subscription
-- holds the source's password (the connection string), and the server may
-- log it (log_statement, log_min_duration_statement, and
-- log_min_error_statement should it fail) or keep it in
-- pg_stat_statements. pgms turns those off for that one statement when the
-- role may set them: superusers always, others with these grants.
DO $$
DECLARE
  p text;
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    FOR p IN SELECT name FROM pg_settings WHERE name IN ('log_statement', 'log_min_duration_statement',
        'log_min_error_statement', 'pg_stat_statements.track_utility') LOOP
      EXECUTE format('GRANT SET ON PARAMETER %s TO pgms', p);
    END LOOP;
  END IF;
END
$$;

-- Taking over a cluster whose library and shards another role owns (a
-- superuser's install, pg-microsharding's): pgms must act as that owner.
--   GRANT app_owner TO pgms;
