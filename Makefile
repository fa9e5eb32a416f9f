# The two commands a new machine needs: `make demo` runs nestguard's main job
# on a local repository; `make test` runs every check CI runs.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
PKGS := ./...
# Packages with a cgo and a pure-Go build: checked and tested both ways.
PUREGO_PKGS := ./internal/compress/

.PHONY: build demo test lint unit test-fips bench fuzz clean

# With cgo (a C compiler present, the default) libzstd is compiled in and
# the binary is linked statically; the pure-Go user and DNS lookups keep
# glibc's NSS, which cannot be linked statically, out of it. CGO_ENABLED=0
# builds a pure-Go binary with a slower zstd encoder (internal/compress).
LDFLAGS := -s -w -X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)
ifeq ($(shell $(GO) env CGO_ENABLED),1)
BUILDFLAGS := -tags osusergo,netgo
LDFLAGS += -linkmode external -extldflags -static
endif

build:
	$(GO) build -trimpath $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -o bin/nestguard ./cmd/nestguard

demo: build
	./scripts/demo.sh bin/nestguard

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)
	CGO_ENABLED=0 $(GO) vet $(PUREGO_PKGS)
	CGO_ENABLED=0 $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PUREGO_PKGS)

# go test shows skipped tests only with -v: after the tests, testdeps says
# which integration suites (PostgreSQL, MinIO, versitygw, Chromium) were skipped and why.
# Under -race the end-to-end tests run nestguard as processes
# (NESTGUARD_TEST_EXEC=1), as they always did: in-process, the race
# detector instruments the whole engine and the suite takes twice as long.
# Without -race (go test ./cmd/nestguard) they run in-process, faster.
# The end-to-end tests run in parallel, E2E_PARALLEL at once: most of
# their time is waiting on PostgreSQL, the S3 servers, fsync and sleeps.
E2E_PARALLEL ?= 4

unit:
	@status=0; NESTGUARD_TEST_EXEC=1 $(GO) test -race -parallel $(E2E_PARALLEL) -timeout 25m $(PKGS) || status=$$?; \
		$(GO) run ./internal/testdeps; exit $$status
	CGO_ENABLED=0 $(GO) test $(PUREGO_PKGS)

# The end-to-end suite again with every repository made by 'init --fips'
# and every nestguard run with GODEBUG=fips140=only (docs/security.md,
# "FIPS 140-3"). Tests create their repositories with an in-process init
# whose key slot is cheap to unlock, so the processes they run skip the
# 4,000,000-iteration PBKDF2 unlock; the tests of init and key slots under
# fips140=only run init as a process.
test-fips:
	NESTGUARD_TEST_FIPS=1 $(GO) test -count=1 -parallel $(E2E_PARALLEL) -timeout 30m ./cmd/nestguard/

test: lint unit test-fips

# Benchmarks of the engine's parts; bench/compare runs the tools side by side.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# A short run of every fuzz target (each for FUZZTIME).
FUZZTIME ?= 20s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
