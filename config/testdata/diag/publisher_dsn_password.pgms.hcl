node "a" {
  dsn           = env("PGMS_DSN_A")
  publisher_dsn = "host=db-a user=repl password=s3cret dbname=app"
}
