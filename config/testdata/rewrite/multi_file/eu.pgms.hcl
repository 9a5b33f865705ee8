# European customers.
shards "1-10" { node = "a" }
shards "11-20" { node = "b" }
