//go:build nestguard_unsafe_prune

package main

// unsafePrune is set only in a binary built with the nestguard_unsafe_prune
// tag, which the prune stress test builds to show that its safety rule
// matters: the commit step of every backup and copy then ignores prune's
// deletion-candidate records (commit.Options.UnsafeIgnoreCandidates).
// Release builds never have it.
const unsafePrune = true
