cluster {
  schema_prefix = "a_very_long_prefix_for_shard_schemas_that_is_too_long"
}
