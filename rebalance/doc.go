// Package rebalance computes a better placement of shards from their live
// weights: the algorithm (Solve), the input it takes from the topology
// files and the live state (Build), the checks around it (Drained,
// CheckPending, CheckRewrite) and a whole proposal with the rewritten
// topology files (Propose).
//
// rebalance never opens a connection and never writes a file: the caller
// reads the cluster (runner.Refresh with weights) and writes the files the
// proposal returns. The same files and weights always give the same
// proposal.
//
// rebalance depends on config, state and planner; none of them depends on
// it.
package rebalance
