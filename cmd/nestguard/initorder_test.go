package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestInitOrder: in the nestguard binary, internal/fipsinit is initialized
// before github.com/rs/xid, whose init reads crypto/rand (and so seeds the
// FIPS entropy source), and internal/startup before regexp and the
// packages that compile expressions in their init (it must populate the
// heap before they fill it).
func TestInitOrder(t *testing.T) {
	c := exec.Command(ngBin, "--help")
	c.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("nestguard --help: %v\n%s", err, out)
	}
	at := func(pkg string) int {
		i := strings.Index(string(out), "init "+pkg+" ")
		if i < 0 {
			t.Fatalf("%s is not in the init trace:\n%s", pkg, out)
		}
		return i
	}
	for _, c := range [][2]string{
		{"github.com/nestguard/nestguard/internal/fipsinit", "github.com/rs/xid"},
		{"github.com/nestguard/nestguard/internal/startup", "regexp"},
		{"github.com/nestguard/nestguard/internal/startup", "github.com/minio/minio-go/v7/pkg/s3utils"},
	} {
		if at(c[0]) > at(c[1]) {
			t.Errorf("%s is initialized after %s (want before):\n%s", c[0], c[1], out)
		}
	}
}
