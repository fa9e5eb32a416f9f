# The two commands a new machine needs: `make demo` runs nestguard's main job
# on a local repository; `make test` runs every check CI runs.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
PKGS := ./...

.PHONY: build demo test lint unit bench fuzz clean

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/nestguard ./cmd/nestguard

demo: build
	./scripts/demo.sh bin/nestguard

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

unit:
	$(GO) test -timeout 25m $(PKGS)

test: lint unit

# Benchmarks of the engine's parts; bench/compare runs the tools side by side.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# A short run of every fuzz target (each for FUZZTIME).
FUZZTIME ?= 20s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
