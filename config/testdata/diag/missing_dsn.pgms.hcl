node "a" {
  drain = true
}
