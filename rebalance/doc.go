// Package rebalance computes a better placement of shards from their
// weights (Solve): drained nodes end empty, every other node ends within a
// tolerance of its fair share, and as little weight as possible moves.
//
// rebalance never opens a connection and never writes a file. The same
// input always gives the same placement.
package rebalance
