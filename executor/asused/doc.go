// Package asused tests moves on PostgreSQL as users run it, where the
// package executor's tests (superuser, trust, one version) do not reach:
// between servers of different major versions (the upgrade path), as
// roles with only the grants the README lists, over TLS with SCRAM
// passwords or client certificates, and with what newer versions add. It
// has no code of its own. Its tests start their own servers
// (pgtest.StartServers) with the versions, pg_hba.conf and certificates
// they need, and run beside package executor's long tests rather than
// after them.
package asused
