# The one test command is `make test`: static checks, unit tests with the
# race detector, and the VM tests (which provision QEMU, a Debian kernel and
# the client tools on first use). .ci/run calls exactly it.

GO ?= go
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: test lint unit staticcheck

test: lint unit

lint: staticcheck
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit:
	$(GO) test -race ./...
