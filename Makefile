# kbs: a Key Broker Service for Confidential Containers.
#
#   make run     build and start the broker on its embedded dev defaults
#   make test    run every test of every module
#   make build   bin/kbs-host, bin/kbs-client, bin/plugins/ + manifest.sha256
#   make proto   regenerate the plugin protocol's Go code
#   make dist    dist/out/: the binaries and the chosen plugins (PLUGINS="kind/name ...")
#   make image   the container image (dist/Containerfile), with podman or docker
#   make install binaries, plugins, /etc/kbs, /var/lib/kbs and the systemd unit
#                (PREFIX=/usr/local DESTDIR=); see docs/deployment.md

SHELL   := /bin/bash
GO      ?= go
BIN     := $(CURDIR)/bin
# Every plugin: plugins/<kind>/<name> with a cmd/kbs-plugin-<kind>-<name>.
PLUGINS ?= $(sort $(foreach m,$(wildcard plugins/*/*/cmd/kbs-plugin-*/main.go),$(word 2,$(subst /, ,$(m)))/$(word 3,$(subst /, ,$(m)))))
# Every Go module: the SDK, the host, each plugin and each shared plugin library.
MODULES := sdk host $(patsubst %/go.mod,%,$(wildcard plugins/*/*/go.mod))
GOTEST_FLAGS ?= -count=1
export GOFLAGS ?= -buildvcs=false

.PHONY: all build host plugins manifest run test vet fmt proto clean new-plugin bench fuzz

all: build

build: host plugins manifest

host:
	$(GO) build -o $(BIN)/kbs-host ./host/cmd/kbs-host
	$(GO) build -o $(BIN)/kbs-client ./host/cmd/kbs-client
	$(GO) build -o $(BIN)/kbs-bench ./host/cmd/kbs-bench

# Plugins are static, as in dist/assemble.sh, except those that load C
# libraries (PKCS#11 modules): no libc mapped into a dozen processes.
CGO_PLUGINS := resource/kms

plugins:
	@mkdir -p $(BIN)/plugins
	@set -e; for p in $(PLUGINS); do \
		kind=$${p%%/*}; name=$${p##*/}; \
		cgo=0; case " $(CGO_PLUGINS) " in *" $$p "*) cgo=1;; esac; \
		echo "go build plugins/$$p -> bin/plugins/kbs-plugin-$$kind-$$name"; \
		CGO_ENABLED=$$cgo $(GO) build -o $(BIN)/plugins/kbs-plugin-$$kind-$$name ./plugins/$$p/cmd/kbs-plugin-$$kind-$$name; \
	done

# The host refuses any plugin binary whose SHA-256 is not in the manifest.
manifest: host plugins
	$(BIN)/kbs-host plugins manifest $(BIN)/plugins

run: build
	$(BIN)/kbs-host --dev --plugin-dir $(BIN)/plugins $(RUN_ARGS)

# make test ends with a short run of every fuzz target (TEST_FUZZTIME each;
# TEST_FUZZTIME=0 skips it).
TEST_FUZZTIME ?= 10s

# Tests that need the real binaries use bin/ when KBS_BIN_DIR points there,
# and build their own otherwise.
test: build
	@set -e; for m in $(MODULES); do \
		[ -n "$$(find $$m -name '*.go' -print -quit)" ] || continue; \
		echo "== go test $$m"; \
		(cd $$m && KBS_BIN_DIR=$(BIN) $(GO) test $(GOTEST_FLAGS) ./...); \
	done
	@echo "== go test sdk/examples/verifier-template (out of the workspace)"
	(cd sdk/examples/verifier-template && GOWORK=off $(GO) test $(GOTEST_FLAGS) ./...)
	@if [ "$(TEST_FUZZTIME)" != 0 ]; then $(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME); fi

vet:
	@set -e; for m in $(MODULES); do \
		[ -n "$$(find $$m -name '*.go' -print -quit)" ] || continue; \
		(cd $$m && $(GO) vet ./...); \
	done
	scripts/check-plugin-deps.sh
	(cd sdk/examples/verifier-template && GOWORK=off $(GO) vet ./...)
	@test -z "$$(gofmt -l sdk host plugins)" || { gofmt -l sdk host plugins; echo "gofmt needed"; exit 1; }

fmt:
	gofmt -w sdk host plugins

# protoc from apt (protobuf-compiler); the Go generators at pinned versions.
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I proto \
		--go_out=sdk --go_opt=module=github.com/gokbs/kbs/sdk \
		--go-grpc_out=sdk --go-grpc_opt=module=github.com/gokbs/kbs/sdk \
		proto/kbs/plugin/v1/plugin.proto

# Load harness: starts bin/kbs-host with every plugin and measures it (README, Performance).
bench: build
	$(BIN)/kbs-bench $(BENCH_ARGS)

# A run of every fuzz target (make test runs them briefly); FUZZTIME=10m or 4h for a longer one.
FUZZTIME ?= 10s
FUZZ_TARGETS := internal/protocol:FuzzAuth internal/protocol:FuzzAttest internal/protocol:FuzzParseResourcePath internal/protocol:FuzzNoDuplicateKeys internal/jwe:FuzzParseTEEPubKey internal/guest:FuzzDecrypt internal/guest:FuzzSealOpen internal/tokenverify:FuzzVerify
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		(cd host && $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) ./$$pkg); \
	done

# A new plugin from the template: make new-plugin KIND=verifier NAME=acme [DIR=/path]
new-plugin:
	scripts/new-plugin.sh $(KIND) $(NAME) $(DIR)

clean:
	rm -rf $(BIN)

# ---- Distribution (dist/, docs/deployment.md) ---------------------------------
# PLUGINS chooses the plugins (default: every in-tree plugin); an unknown name
# is an error that lists the known ones.
DIST_OUT ?= $(CURDIR)/dist/out
IMAGE    ?= localhost/kbs:latest
PREFIX   ?= /usr/local
DESTDIR  ?=

.PHONY: dist image install

dist:
	GO="$(GO)" dist/assemble.sh "$(DIST_OUT)" $(PLUGINS)

# The first engine that answers builds the image; CONTAINER_ENGINE=docker forces one.
image:
	@set -e; engine=; tried=; \
	for e in $${CONTAINER_ENGINE:-podman docker}; do \
		command -v $$e >/dev/null 2>&1 || continue; \
		if $$e info >/dev/null 2>&1; then engine=$$e; break; fi; \
		tried="$$tried $$e"; \
	done; \
	if [ -z "$$engine" ]; then \
		if [ -n "$$tried" ]; then \
			echo "make image: no container engine answers ('info' failed for:$$tried): start the Docker daemon or use podman." >&2; \
		else \
			echo "make image: no container engine (podman or docker) is installed." >&2; \
		fi; \
		echo "make image: 'make dist PLUGINS=...' assembles the image's files without an engine." >&2; \
		exit 1; \
	fi; \
	echo "$$engine build -f dist/Containerfile --build-arg PLUGINS=\"$(PLUGINS)\" -t $(IMAGE) ."; \
	$$engine build -f dist/Containerfile --build-arg PLUGINS="$(PLUGINS)" -t $(IMAGE) .

# Installs what `make dist` assembled (so that `sudo make install` needs no Go).
# /usr/local in the unit and the configuration becomes $(PREFIX). An existing
# /etc/kbs/kbs.toml is kept.
install:
	@test -x "$(DIST_OUT)/bin/kbs-host" -a -f "$(DIST_OUT)/plugins/manifest.sha256" || \
		{ echo "make install: $(DIST_OUT) is not assembled: run 'make dist PLUGINS=...' first" >&2; exit 1; }
	install -d -m 0755 "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/lib/kbs/plugins" \
		"$(DESTDIR)$(PREFIX)/lib/systemd/system" "$(DESTDIR)$(PREFIX)/lib/sysusers.d"
	install -m 0755 "$(DIST_OUT)/bin/kbs-host" "$(DIST_OUT)/bin/kbs-client" "$(DESTDIR)$(PREFIX)/bin/"
	rm -f "$(DESTDIR)$(PREFIX)/lib/kbs/plugins/"kbs-plugin-*
	install -m 0755 "$(DIST_OUT)/plugins/"kbs-plugin-* "$(DESTDIR)$(PREFIX)/lib/kbs/plugins/"
	install -m 0644 "$(DIST_OUT)/plugins/manifest.sha256" "$(DESTDIR)$(PREFIX)/lib/kbs/plugins/"
	sed 's|/usr/local/|$(PREFIX)/|g' dist/systemd/kbs.service > "$(DESTDIR)$(PREFIX)/lib/systemd/system/kbs.service"
	chmod 0644 "$(DESTDIR)$(PREFIX)/lib/systemd/system/kbs.service"
	install -m 0644 dist/systemd/kbs.sysusers "$(DESTDIR)$(PREFIX)/lib/sysusers.d/kbs.conf"
	install -d -m 0755 "$(DESTDIR)/etc/kbs"
	install -d -m 0750 "$(DESTDIR)/etc/kbs/keys" "$(DESTDIR)/var/lib/kbs" "$(DESTDIR)/var/lib/kbs/repository"
	@if [ -e "$(DESTDIR)/etc/kbs/kbs.toml" ]; then \
		echo "keeping $(DESTDIR)/etc/kbs/kbs.toml (the new default is dist/systemd/kbs.toml)"; \
	else \
		echo "installing $(DESTDIR)/etc/kbs/kbs.toml"; \
		sed 's|/usr/local/|$(PREFIX)/|g' dist/systemd/kbs.toml > "$(DESTDIR)/etc/kbs/kbs.toml"; \
		chmod 0644 "$(DESTDIR)/etc/kbs/kbs.toml"; \
	fi
