# tencrypt: the two commands that matter are `make demo` and `make test`
# (README.md). Both run scripts/setup first, which installs and caches what
# they need.
SHELL := /bin/bash
export PATH := /var/cache/tencrypt/bin:/usr/local/go/bin:$(PATH)

BIN := bin/tencrypt

.PHONY: all build setup test unit lint demo bench clean

all: build

build:
	go build -trimpath -o $(BIN) ./cmd/tencrypt

setup:
	scripts/setup

# Every test: lint, then all Go tests including the root-only integration
# tests on network namespaces and the real Vault and SoftHSM2 backends.
test: setup
	scripts/test

lint:
	scripts/lint

# The demo installs less than the tests (no Vault build, no lint tools).
demo:
	scripts/setup demo
	$(MAKE) build
	scripts/demo

bench: setup build
	scripts/bench

clean:
	rm -rf bin
