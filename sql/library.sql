-- The pgms stored-function library. It keeps the names, arguments and meaning
-- of the @clickup/pg-microsharding API so that applications and clusters
-- managed by that tool keep working unchanged.
--
-- The installer runs this script in one transaction with search_path set to
-- the library schema only; every function captures that search_path
-- (SET search_path FROM CURRENT), so no object here is schema-qualified.
-- The script must stay idempotent: it is re-run on every install and upgrade.

-- The active list lives in the body of an IMMUTABLE function so that
-- microsharding_list_active_shards() reads no table. An existing body is the
-- live state of the node: it must survive re-installs and upgrades, hence
-- CREATE without OR REPLACE, guarded against duplicates.
DO $guard$
BEGIN
  BEGIN
    CREATE FUNCTION microsharding_active_shards_() RETURNS text[]
      LANGUAGE sql IMMUTABLE
      SET search_path FROM CURRENT
      AS $body$ SELECT '{}'::text[]; $body$;
  EXCEPTION WHEN duplicate_function THEN
    NULL;
  END;
  -- Naming may be overridden per node; the default is sh + 4 digits.
  BEGIN
    CREATE FUNCTION microsharding_schema_name_(shard integer) RETURNS text
      LANGUAGE sql IMMUTABLE
      SET search_path FROM CURRENT
      AS $body$ SELECT 'sh' || lpad(shard::text, 4, '0'); $body$;
  EXCEPTION WHEN duplicate_function THEN
    NULL;
  END;
  BEGIN
    CREATE FUNCTION microsharding_shard_max_() RETURNS integer
      LANGUAGE sql IMMUTABLE
      SET search_path FROM CURRENT
      AS $body$ SELECT 9999; $body$;
  EXCEPTION WHEN duplicate_function THEN
    NULL;
  END;
END;
$guard$;

CREATE OR REPLACE FUNCTION microsharding_version() RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path FROM CURRENT
AS $$ SELECT 3; $$;

COMMENT ON FUNCTION microsharding_version()
  IS 'Version of the pgms stored-function library installed in this schema.';

-- Re-creates the naming functions. Refuses to rename while shards are
-- active, because the active list holds names, not numbers.
CREATE OR REPLACE FUNCTION microsharding_configure_naming_(
  prefix text,
  digits integer
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  old_zero text := microsharding_schema_name_(0);
  new_zero text := prefix || repeat('0', digits);
BEGIN
  IF prefix IS NULL OR prefix !~ '^[a-z_][a-z0-9_]*$' THEN
    RAISE EXCEPTION 'invalid schema prefix %', quote_literal(prefix)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use lower-case letters, digits and underscores, starting with a letter.';
  END IF;
  IF digits IS NULL OR digits < 1 OR digits > 9 THEN
    RAISE EXCEPTION 'invalid schema digits %', digits
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use a width between 1 and 9.';
  END IF;
  IF old_zero = new_zero AND microsharding_shard_max_() = (10 ^ digits)::integer - 1 THEN
    RETURN;
  END IF;
  IF cardinality(microsharding_active_shards_()) > 0 THEN
    RAISE EXCEPTION 'cannot change shard naming from % to %: % shards are active',
        old_zero, new_zero, cardinality(microsharding_active_shards_())
      USING ERRCODE = 'object_in_use',
            HINT = 'Keep the existing naming, or deactivate every shard first.';
  END IF;
  EXECUTE format(
    $sql$
      CREATE OR REPLACE FUNCTION microsharding_schema_name_(shard integer) RETURNS text
        LANGUAGE sql IMMUTABLE
        SET search_path FROM CURRENT
        AS $body$ SELECT %L || lpad(shard::text, %s, '0'); $body$
    $sql$, prefix, digits);
  EXECUTE format(
    $sql$
      CREATE OR REPLACE FUNCTION microsharding_shard_max_() RETURNS integer
        LANGUAGE sql IMMUTABLE
        SET search_path FROM CURRENT
        AS $body$ SELECT %s; $body$
    $sql$, (10 ^ digits)::bigint - 1);
END;
$$;

-- Serialises the changes of the active list within the database, until the
-- end of the transaction. A change reads the list and re-creates the
-- function holding it; two such read-modify-writes at once would either
-- fail ("tuple concurrently updated") or, worse, start from the same list.
-- Every function that changes the list takes this lock before reading it.
-- pgms's move takes the same key (under its lock_timeout) before calling
-- them; advisory locks are re-entrant within a session.
CREATE OR REPLACE FUNCTION microsharding_lock_active_list_() RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$ SELECT pg_catalog.pg_advisory_xact_lock(8099562797138010996); $$;

-- Validates a shard range and returns its upper bound (shard_to defaults to
-- shard_from). lpad() silently truncates wider numbers, so the width check is
-- what keeps shard 12345 from becoming schema sh1234.
CREATE OR REPLACE FUNCTION microsharding_check_range_(
  shard_from integer,
  shard_to integer
) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
  shard_to := COALESCE(shard_to, shard_from);
  IF shard_from IS NULL THEN
    RAISE EXCEPTION 'shard_from must not be NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF shard_from < 0 THEN
    RAISE EXCEPTION 'invalid shard range %..%: shard numbers cannot be negative', shard_from, shard_to
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF shard_from > shard_to THEN
    RAISE EXCEPTION 'invalid shard range %..%: shard_from is greater than shard_to', shard_from, shard_to
      USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Did you mean %s..%s?', shard_to, shard_from);
  END IF;
  IF shard_to > microsharding_shard_max_() THEN
    RAISE EXCEPTION 'invalid shard range %..%: shard % does not fit the schema naming (the largest is %)',
        shard_from, shard_to, shard_to, microsharding_shard_max_()
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN shard_to;
END;
$$;

-- The active shards among names that exist as schemas now, as
-- regnamespace, ordered by name (the "C" order of pg_namespace names); a
-- name listed twice counts once.
--
-- It reads pg_namespace, yet is declared IMMUTABLE on purpose: called with
-- a constant, the planner evaluates it once, when it plans, and keeps the
-- result as a constant in the cached plan of
-- microsharding_list_active_shards(). That constant does not go stale:
-- PostgreSQL marks every cached plan of every session invalid whenever a
-- row of pg_namespace changes (CREATE, DROP, ALTER SCHEMA: in the changing
-- session at once and again if it rolls back, in the others when it
-- commits), because any schema change may change what a name in a plan
-- resolves to; and it marks invalid the plans that folded
-- microsharding_active_shards_() whenever that function is re-created.
-- The next call plans again and sees the schemas as they are then. Keep it
-- out of anything that stores its result (an index, a generated column).
CREATE OR REPLACE FUNCTION microsharding_existing_shards_(
  names text[]
) RETURNS regnamespace[]
LANGUAGE sql IMMUTABLE
SET search_path FROM CURRENT
AS $$
  SELECT COALESCE(array_agg(n.oid::regnamespace ORDER BY n.nspname), '{}')
  FROM pg_catalog.pg_namespace n
  WHERE n.nspname IN (SELECT unnest(names))
$$;

-- The hot path, called by applications on every node very often. Its one
-- statement is planned once per session and the plan holds the answer as a
-- constant (see microsharding_existing_shards_() above): a call costs what
-- returning that constant costs, and the catalog is read again only after a
-- schema or the active list changed. A schema dropped behind the library's
-- back is thereby never listed, with no check on every call and no event
-- trigger (which only a superuser may create).
--
-- With 1,000 active shards (make bench-discovery) a call is as fast as
-- SELECT of the same constant regnamespace[], twice as fast as version 2's
-- cast of the names; the README lists the alternatives measured. Why this
-- shape:
-- - PL/pgSQL, not an inlinable SQL function: the cached plan is the
--   session's, so it also serves statements that are not prepared (the
--   simple query protocol plans every statement, and would read the catalog
--   on every call if the constant were folded into the caller's plan).
-- - STABLE, not IMMUTABLE: the caller's planner does not fold the call, so
--   the caller's own plans need no invalidation when the list changes, and
--   the function cannot end up in an index or a generated column.
-- - SET search_path: a cached plan is remade whenever the search_path
--   differs from the one it was made under; applications that switch
--   search_path between shards would otherwise re-read the catalog on every
--   call.
CREATE OR REPLACE FUNCTION microsharding_list_active_shards() RETURNS regnamespace[]
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
BEGIN
  RETURN microsharding_existing_shards_(microsharding_active_shards_());
END;
$$;

COMMENT ON FUNCTION microsharding_list_active_shards()
  IS 'Active shards (schemas) that exist in this database, ordered by name. '
     'Shards copied here from another node stay inactive until activated.';

-- Replaces the active list (when given) and then re-filters it to schemas
-- that exist. Re-creating microsharding_active_shards_() is enough for every
-- session to see the new list: PostgreSQL invalidates, in all sessions, the
-- cached plans that folded the old function into a constant, including
-- applications' prepared statements and microsharding_list_active_shards()'s
-- own plan. No DISCARD PLANS is needed, which would only reach this session
-- and throw away its unrelated plans too.
CREATE OR REPLACE FUNCTION microsharding_ensure_active_shards_(
  shards text[] = NULL
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  template constant text := $sql$
    CREATE OR REPLACE FUNCTION microsharding_active_shards_() RETURNS text[]
      LANGUAGE sql IMMUTABLE
      SET search_path FROM CURRENT
      AS $body$ SELECT %L::text[]; $body$
  $sql$;
  existing text[];
BEGIN
  PERFORM microsharding_lock_active_list_();
  IF shards IS NULL THEN
    shards := microsharding_active_shards_();
  END IF;
  SELECT COALESCE(array_agg(n.nspname::text ORDER BY n.nspname), '{}') INTO existing
  FROM (SELECT DISTINCT s FROM unnest(shards) AS s) AS a(name)
  JOIN pg_catalog.pg_namespace n ON n.nspname = a.name;
  IF existing IS DISTINCT FROM microsharding_active_shards_() THEN
    EXECUTE format(template, existing);
  END IF;
END;
$$;

COMMENT ON FUNCTION microsharding_ensure_active_shards_(text[])
  IS 'Sets the list of active shards of this database (when given) and drops '
     'names of schemas that no longer exist from it.';

CREATE OR REPLACE FUNCTION microsharding_ensure_exist(
  shard_from integer,
  shard_to integer = NULL
) RETURNS SETOF regnamespace
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  name text;
BEGIN
  shard_to := microsharding_check_range_(shard_from, shard_to);
  FOR name IN
    SELECT s.name
    FROM generate_series(shard_from, shard_to) AS g(n),
      LATERAL (SELECT microsharding_schema_name_(g.n) AS name) s
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = s.name)
    ORDER BY s.name
  LOOP
    EXECUTE format('CREATE SCHEMA %I', name);
    RETURN NEXT name::regnamespace;
  END LOOP;
END;
$$;

COMMENT ON FUNCTION microsharding_ensure_exist(integer, integer)
  IS 'Creates the missing shard schemas of shard_from..shard_to (inclusive) '
     'and returns those it created. New shards are inactive.';

CREATE OR REPLACE FUNCTION microsharding_ensure_active(
  shard_from integer,
  shard_to integer = NULL
) RETURNS SETOF regnamespace
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  names text[];
  missing text;
BEGIN
  shard_to := microsharding_check_range_(shard_from, shard_to);
  PERFORM microsharding_lock_active_list_();
  SELECT array_agg(microsharding_schema_name_(n) ORDER BY n) INTO names
  FROM generate_series(shard_from, shard_to) AS n;
  SELECT string_agg(s, ', ' ORDER BY s) INTO missing
  FROM unnest(names) AS s
  WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = s);
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'No such schema: %', missing
      USING ERRCODE = 'invalid_schema_name',
            HINT = 'Create the shards first with microsharding_ensure_exist().';
  END IF;
  PERFORM microsharding_ensure_active_shards_(microsharding_active_shards_() || names);
  RETURN QUERY SELECT s::regnamespace FROM unnest(names) AS s;
END;
$$;

COMMENT ON FUNCTION microsharding_ensure_active(integer, integer)
  IS 'Activates the shards shard_from..shard_to (inclusive); every one must exist.';

CREATE OR REPLACE FUNCTION microsharding_ensure_inactive(
  shard_from integer,
  shard_to integer = NULL
) RETURNS SETOF regnamespace
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  names text[];
  active text[];
BEGIN
  shard_to := microsharding_check_range_(shard_from, shard_to);
  PERFORM microsharding_lock_active_list_();
  active := microsharding_active_shards_();
  SELECT COALESCE(array_agg(s ORDER BY s), '{}') INTO names
  FROM generate_series(shard_from, shard_to) AS n,
    LATERAL (SELECT microsharding_schema_name_(n) AS s) x
  WHERE s = ANY(active);
  IF cardinality(names) > 0 THEN
    PERFORM microsharding_ensure_active_shards_(
      ARRAY(SELECT a FROM unnest(active) AS a WHERE a <> ALL(names)));
  END IF;
  RETURN QUERY
    SELECT n.oid::regnamespace
    FROM unnest(names) AS s
    JOIN pg_catalog.pg_namespace n ON n.nspname = s
    ORDER BY n.nspname;
END;
$$;

COMMENT ON FUNCTION microsharding_ensure_inactive(integer, integer)
  IS 'Deactivates the shards shard_from..shard_to (inclusive) and returns those '
     'that were active.';

CREATE OR REPLACE FUNCTION microsharding_ensure_absent(
  shard_from integer,
  shard_to integer = NULL
) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  name text;
  objects text;
BEGIN
  shard_to := microsharding_check_range_(shard_from, shard_to);
  PERFORM microsharding_lock_active_list_();
  FOR name IN
    SELECT s.name
    FROM generate_series(shard_from, shard_to) AS g(n),
      LATERAL (SELECT microsharding_schema_name_(g.n) AS name) s
    WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = s.name)
    ORDER BY s.name
  LOOP
    -- A plain DROP SCHEMA would refuse too, but its message does not say
    -- which objects keep the schema alive.
    SELECT string_agg(format('%s %s', kind, obj), ', ' ORDER BY kind, obj) INTO objects
    FROM (
      SELECT 'relation' AS kind, format('%I.%I', name, c.relname) AS obj
      FROM pg_catalog.pg_class c
      WHERE c.relnamespace = name::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      UNION ALL
      SELECT 'function', format('%I.%I', name, p.proname)
      FROM pg_catalog.pg_proc p
      WHERE p.pronamespace = name::regnamespace
      UNION ALL
      SELECT 'type', format('%I.%I', name, t.typname)
      FROM pg_catalog.pg_type t
      WHERE t.typnamespace = name::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm')
        OR (t.typnamespace = name::regnamespace AND t.typtype = 'c' AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c'))
    ) o;
    IF objects IS NOT NULL THEN
      RAISE EXCEPTION 'cannot drop shard schema %: it is not empty (%)', name, objects
        USING ERRCODE = 'dependent_objects_still_exist',
              HINT = 'Move or drop its objects first; pgms never drops a shard with data.';
    END IF;
    EXECUTE format('DROP SCHEMA %I', name);
    RETURN NEXT name;
  END LOOP;
  PERFORM microsharding_ensure_active_shards_();
END;
$$;

COMMENT ON FUNCTION microsharding_ensure_absent(integer, integer)
  IS 'Drops the EMPTY shard schemas of shard_from..shard_to (inclusive) and '
     'returns those it dropped; a schema holding any object is refused.';

CREATE OR REPLACE FUNCTION microsharding_do_on_each(
  cmd text,
  OUT shard regnamespace,
  OUT row_count text
) RETURNS SETOF record
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  global_shard constant text := microsharding_schema_name_(0);
BEGIN
  cmd := trim(cmd);
  FOREACH shard IN ARRAY microsharding_list_active_shards() LOOP
    CONTINUE WHEN shard::text = quote_ident(global_shard);
    BEGIN
      PERFORM set_config('search_path', format('%s,public', shard), true);
      EXECUTE cmd;
      GET DIAGNOSTICS row_count = ROW_COUNT;
      IF row_count = '0' THEN
        row_count := '';
      END IF;
      RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'error when running SQL on shard %', shard;
      RAISE;
    END;
  END LOOP;
END;
$$;

COMMENT ON FUNCTION microsharding_do_on_each(text)
  IS 'Runs an SQL statement in every active shard except shard 0, with '
     'search_path set to the shard. Use with care.';

-- Schemas made by microsharding_debug_fdw_create() for a prefix.
CREATE OR REPLACE FUNCTION microsharding_debug_fdw_schemas_(
  dst_prefix text
) RETURNS regnamespace[]
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
  SELECT COALESCE(array_agg(n.oid::regnamespace ORDER BY n.nspname), '{}')
  FROM pg_catalog.pg_namespace n
  WHERE starts_with(n.nspname, dst_prefix || '_')
    AND pg_catalog.obj_description(n.oid, 'pg_namespace') LIKE 'pg-microsharding:%'
$$;

CREATE OR REPLACE FUNCTION microsharding_debug_views_create(
  dst_schema text = 'public',
  fdw_dst_prefix text = NULL
) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  sources regnamespace[];
  tbl record;
  src record;
  columns text[];
  column_types text[];
  column_cast boolean[];
  selects text[];
  shard_label text;
  view_name text;
  view_sql text;
  mark text;
  existing_kind "char";
  existing_comment text;
BEGIN
  IF fdw_dst_prefix IS NOT NULL THEN
    sources := microsharding_debug_fdw_schemas_(fdw_dst_prefix);
  ELSE
    sources := microsharding_list_active_shards();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = dst_schema) THEN
    EXECUTE format('CREATE SCHEMA %I', dst_schema);
  END IF;

  FOR tbl IN
    SELECT c.relname::text AS name
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = ANY(sources)
      AND c.relkind IN ('r', 'p', 'f', 'v')
      AND NOT c.relispartition
    GROUP BY c.relname
    ORDER BY c.relname
  LOOP
    -- The union of the columns of every shard's table: id first, then by
    -- name. A column gets the type it has in the shards; where shards
    -- disagree it is read as text, so that UNION ALL can match the branches.
    -- Missing columns are typed NULLs: an untyped NULL would make UNION ALL
    -- resolve the column as text before it meets the real type.
    SELECT array_agg(a.attname ORDER BY a.attname <> 'id', a.attname),
           array_agg(CASE WHEN a.types = 1 THEN a.typ ELSE 'text' END ORDER BY a.attname <> 'id', a.attname),
           array_agg(a.types > 1 ORDER BY a.attname <> 'id', a.attname)
    INTO columns, column_types, column_cast
    FROM (
      SELECT a.attname::text AS attname,
             min(format_type(a.atttypid, a.atttypmod)) AS typ,
             count(DISTINCT format_type(a.atttypid, a.atttypmod)) AS types
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
      WHERE c.relnamespace = ANY(sources) AND c.relname = tbl.name
        AND c.relkind IN ('r', 'p', 'f', 'v') AND NOT c.relispartition
        AND a.attnum > 0 AND NOT a.attisdropped
      GROUP BY a.attname
    ) a;

    selects := '{}';
    FOR src IN
      SELECT c.oid, n.nspname::text AS schema_name
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relnamespace = ANY(sources) AND c.relname = tbl.name
        AND c.relkind IN ('r', 'p', 'f', 'v') AND NOT c.relispartition
      ORDER BY n.nspname
    LOOP
      shard_label := src.schema_name;
      IF fdw_dst_prefix IS NOT NULL THEN
        shard_label := substr(src.schema_name, length(fdw_dst_prefix) + 2);
      END IF;
      selects := selects || format(
        '  SELECT %L::text, %s FROM %I.%I',
        shard_label,
        (
          SELECT string_agg(
            CASE
              WHEN NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = src.oid AND a.attname = u.col AND a.attnum > 0 AND NOT a.attisdropped
              ) THEN 'NULL::' || column_types[u.ord]
              WHEN column_cast[u.ord] THEN quote_ident(u.col) || '::text'
              ELSE quote_ident(u.col)
            END,
            ', ' ORDER BY u.ord)
          FROM unnest(columns) WITH ORDINALITY AS u(col, ord)
        ),
        src.schema_name,
        tbl.name);
    END LOOP;

    view_name := format('%I.%I', dst_schema, tbl.name);
    view_sql := format(
      E'CREATE VIEW %s(shard, %s) AS\n%s',
      view_name,
      (SELECT string_agg(quote_ident(c), ', ' ORDER BY ord) FROM unnest(columns) WITH ORDINALITY AS u(c, ord)),
      array_to_string(selects, E'\nUNION ALL\n'));
    mark := 'pg-microsharding:' || md5(view_sql);

    SELECT c.relkind, pg_catalog.obj_description(c.oid, 'pg_class')
    INTO existing_kind, existing_comment
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = dst_schema AND c.relname = tbl.name;

    IF FOUND AND (existing_kind <> 'v' OR existing_comment IS NULL
                  OR existing_comment NOT LIKE 'pg-microsharding:%') THEN
      RAISE NOTICE 'skipping debug view %: a relation of that name exists and was not made by this function', view_name;
      CONTINUE;
    END IF;
    IF existing_comment IS NOT DISTINCT FROM mark THEN
      CONTINUE;
    END IF;
    -- Column lists may change between versions of the view; CREATE OR
    -- REPLACE VIEW cannot drop or reorder columns, so re-create it.
    IF FOUND THEN
      EXECUTE format('DROP VIEW %s', view_name);
    END IF;
    EXECUTE view_sql;
    EXECUTE format('COMMENT ON VIEW %s IS %L', view_name, mark);
    RETURN NEXT view_name;
  END LOOP;
END;
$$;

COMMENT ON FUNCTION microsharding_debug_views_create(text, text)
  IS 'Creates one debug view per table name found in the shards (or in the '
     'debug foreign schemas of fdw_dst_prefix), a UNION ALL over the shards '
     'with a leading shard column; columns a shard lacks read as NULL. A view '
     'is re-created only when its text changes. Returns the views it wrote.';

CREATE OR REPLACE FUNCTION microsharding_debug_views_drop(
  dst_schema text = 'public'
) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  view_name text;
BEGIN
  FOR view_name IN
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = dst_schema AND c.relkind = 'v'
      AND pg_catalog.obj_description(c.oid, 'pg_class') LIKE 'pg-microsharding:%'
    ORDER BY c.relname
  LOOP
    EXECUTE format('DROP VIEW %s', view_name);
    RETURN NEXT view_name;
  END LOOP;
END;
$$;

COMMENT ON FUNCTION microsharding_debug_views_drop(text)
  IS 'Drops the debug views made by microsharding_debug_views_create().';

-- A host may be given as "host" (the current server's port is used, as in
-- pg-microsharding) or as "host:port", which lets several servers share an
-- address.
CREATE OR REPLACE FUNCTION microsharding_debug_fdw_create(
  dst_prefix text,
  src_hosts text[]
) RETURNS TABLE (
  server text,
  shard_count integer
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  host_entry text;
  host_name text;
  host_port text;
  dblink_schema text;
  remote_shards text[];
  remote_shard text;
  dst text;
BEGIN
  IF dst_prefix IS NULL OR dst_prefix = '' THEN
    RAISE EXCEPTION 'dst_prefix must not be empty' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  CREATE EXTENSION IF NOT EXISTS postgres_fdw;
  CREATE EXTENSION IF NOT EXISTS dblink;
  SELECT n.nspname INTO dblink_schema
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
  WHERE e.extname = 'dblink';

  FOREACH host_entry IN ARRAY src_hosts LOOP
    host_name := host_entry;
    host_port := current_setting('port');
    IF host_entry ~ '^[^:\[\]]+:[0-9]+$' THEN
      host_name := split_part(host_entry, ':', 1);
      host_port := split_part(host_entry, ':', 2);
    END IF;
    server := dst_prefix || '_' || regexp_replace(host_entry, '[^a-zA-Z0-9]+', '_', 'g');
    EXECUTE format(
      'CREATE SERVER %I FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %L, port %L, dbname %L)',
      server, host_name, host_port, current_database());
    EXECUTE format('COMMENT ON SERVER %I IS %L', server, 'pg-microsharding:' || host_entry);
    EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (user %L)',
      server, current_user);

    EXECUTE format(
      'SELECT r.shards FROM %I.dblink(%L, %L) AS r(shards text[])',
      dblink_schema, server,
      format('SELECT %I.microsharding_list_active_shards()::text[]', current_schema()))
    INTO remote_shards;

    FOREACH remote_shard IN ARRAY COALESCE(remote_shards, '{}') LOOP
      dst := dst_prefix || '_' || remote_shard;
      EXECUTE format('CREATE SCHEMA %I', dst);
      EXECUTE format('COMMENT ON SCHEMA %I IS %L', dst, 'pg-microsharding:' || host_entry);
      EXECUTE format('IMPORT FOREIGN SCHEMA %I FROM SERVER %I INTO %I', remote_shard, server, dst);
    END LOOP;
    shard_count := COALESCE(cardinality(remote_shards), 0);
    RETURN NEXT;
  END LOOP;
END;
$$;

COMMENT ON FUNCTION microsharding_debug_fdw_create(text, text[])
  IS 'For each host ("host" or "host:port"), creates a postgres_fdw server '
     '<prefix>_<host> and, per active shard there, a schema <prefix>_<shard> '
     'filled by IMPORT FOREIGN SCHEMA. Everything made is marked for '
     'microsharding_debug_fdw_drop().';

CREATE OR REPLACE FUNCTION microsharding_debug_fdw_drop(
  dst_prefix text
) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  dst regnamespace;
  server_name text;
BEGIN
  FOREACH dst IN ARRAY microsharding_debug_fdw_schemas_(dst_prefix) LOOP
    EXECUTE format('DROP SCHEMA %s CASCADE', dst);
  END LOOP;
  FOR server_name IN
    SELECT s.srvname
    FROM pg_catalog.pg_foreign_server s
    WHERE starts_with(s.srvname, dst_prefix || '_')
      AND pg_catalog.obj_description(s.oid, 'pg_foreign_server') LIKE 'pg-microsharding:%'
    ORDER BY s.srvname
  LOOP
    EXECUTE format('DROP SERVER %I CASCADE', server_name);
    RETURN NEXT server_name;
  END LOOP;
END;
$$;

COMMENT ON FUNCTION microsharding_debug_fdw_drop(text)
  IS 'Drops the debug foreign servers and schemas made by '
     'microsharding_debug_fdw_create() for this prefix.';
