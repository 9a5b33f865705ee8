shards "129-256" { node = "b" }
shards "0"       { node = "a" }
shards "1-128"   { node = "a" }

shards "257-260" {
  node   = "c"
  active = false
}

shards "300" {
  node   = "b"
  pinned = true
}

removed { shards = "400-410" }
