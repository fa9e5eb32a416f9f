//go:build !nestguard_unsafe_prune

package main

// unsafePrune: see unsafe_prune.go; off in every ordinary build.
const unsafePrune = false
