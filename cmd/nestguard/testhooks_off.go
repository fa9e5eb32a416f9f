//go:build !nestguard_testhooks

package main

// testHooks: see testhooks_on.go; off in every ordinary build.
const testHooks = false
