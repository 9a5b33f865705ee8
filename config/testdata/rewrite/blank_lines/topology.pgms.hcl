node "a" {
  dsn = env("PGMS_DSN_A")
}

node "b" {
  dsn = env("PGMS_DSN_B")
}

// Placement, one block per range.

shards "1-20" {
  # The first customers.
  node = "a"
}

shards "21-40" {
  node = "b"
}
