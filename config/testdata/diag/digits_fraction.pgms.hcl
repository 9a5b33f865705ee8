cluster {
  schema_digits = 4.5
}
