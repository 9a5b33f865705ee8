node "a" { dsn = "postgres://app:s3cret@db-a:5432/app" }
