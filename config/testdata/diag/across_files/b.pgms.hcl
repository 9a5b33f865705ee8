shards "40-60" { node = "b" }
