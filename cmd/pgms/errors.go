package main

import "github.com/pgms-dev/pgms/internal/pgutil"

// describe renders an error for a person: database errors with SQLSTATE,
// detail and hint, passwords removed.
func describe(err error) string { return pgutil.Describe(err) }
