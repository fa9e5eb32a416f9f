//go:build nestguard_testhooks

package main

// testHooks enables the end-to-end tests' hooks (NESTGUARD_TEST_PRUNE_AT,
// NESTGUARD_TEST_AUDIT_AT: pruneTestHook, auditTestHook). Only the binary
// the tests build (TestMain, with -tags nestguard_testhooks) has them: in
// a release build those variables do nothing.
const testHooks = true
