shards "0"    { node = "a" }
shards "1-10" { node = "a" }
