cluster {
  schema_prefix = "sh"
}
