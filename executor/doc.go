// Package executor carries out changes on the cluster: allocating shards,
// moving them between nodes online, flipping active flags, cleaning up.
//
// Every operation decides what to do from the physical state it finds on
// the nodes (schemas, active lists, publications, slots, subscriptions), not
// from a memory of what it did before, so running it again after a crash or
// an interruption continues the work or finds it done. The journal (package
// state) only records what happened, for people and for pgms status.
//
// A move (Move) copies a shard schema from a source node to a destination
// with logical replication and switches it over under a short, bounded
// write pause. Its guarantees:
//
//   - Before the cutover commits on the source, a failure or an interrupt
//     removes everything the move created (subscription, slot, publication,
//     the destination's copy); the source's data is never touched.
//   - After that commit the move only goes forward: a re-run finishes it.
//   - The cutover never queues behind other transactions for longer than its
//     lock timeout, and holds the source's tables for a bounded time.
//
// executor never reads topology files and never decides placement: it is
// given what to do.
package executor
