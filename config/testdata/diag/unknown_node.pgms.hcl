node "eu-west" { dsn = env("PGMS_DSN_A") }
node "us-east" { dsn = env("PGMS_DSN_B") }

shards "0"    { node = "eu-west" }
shards "1-10" { node = "eu_west" }
shards "11"   { node = "c" }
