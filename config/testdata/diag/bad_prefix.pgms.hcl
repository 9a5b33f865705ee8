cluster {
  schema_prefix = "Shard-"
}
