# Settings that differ from the defaults.
cluster {
  schema_prefix   = "shard_"
  schema_digits   = 5
  migrate_command = ["./migrate.sh", "--up"]
  weight_sql      = "SELECT pg_total_relation_size('users')"
  deactivate_sql  = "CREATE TRIGGER reject BEFORE INSERT ON $1 EXECUTE FUNCTION reject()"
  cleanup_after   = "36h"
  library_schema  = "ms"
  state_node      = "b"
}
