# American customers.
shards "21-30" { node = "a" }
shards "31-40" { node = "b" }
