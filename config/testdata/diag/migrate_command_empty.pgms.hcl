cluster {
  migrate_command = []
}
