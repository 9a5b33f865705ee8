node "a" { dsn = env("PGMS_DSN_A") }

# A second cluster block, in another file.
cluster {
  cleanup_after = "24h"
}
