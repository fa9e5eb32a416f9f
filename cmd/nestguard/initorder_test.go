package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestInitOrder: in the nestguard binary, internal/startup is initialized
// before regexp and the packages that compile expressions in their init
// (it must populate the heap before they fill it): the S3 client's
// endpoint rules (aws-sdk-go-v2's service/s3/internal/endpoints, and
// service/sts's for web identity credentials).
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
		{"github.com/nestguard/nestguard/internal/startup", "regexp"},
		{"github.com/nestguard/nestguard/internal/startup", "github.com/aws/aws-sdk-go-v2/service/s3/internal/endpoints"},
		{"github.com/nestguard/nestguard/internal/startup", "github.com/aws/aws-sdk-go-v2/service/sts/internal/endpoints"},
	} {
		if at(c[0]) > at(c[1]) {
			t.Errorf("%s is initialized after %s (want before):\n%s", c[0], c[1], out)
		}
	}
}
