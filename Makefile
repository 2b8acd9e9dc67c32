# kbs: a Key Broker Service for Confidential Containers.
#
#   make run     build and start the broker on its embedded dev defaults
#   make test    run every test of every module
#   make build   bin/kbs-host, bin/kbs-client, bin/plugins/ + manifest.sha256
#   make proto   regenerate the plugin protocol's Go code

SHELL   := /bin/bash
GO      ?= go
BIN     := $(CURDIR)/bin
# Every plugin: plugins/<kind>/<name> with a cmd/kbs-plugin-<kind>-<name>.
PLUGINS ?= $(sort $(foreach m,$(wildcard plugins/*/*/cmd/kbs-plugin-*/main.go),$(word 2,$(subst /, ,$(m)))/$(word 3,$(subst /, ,$(m)))))
# Every Go module: the SDK, the host, each plugin and each shared plugin library.
MODULES := sdk host $(patsubst %/go.mod,%,$(wildcard plugins/*/*/go.mod))
GOTEST_FLAGS ?= -count=1
export GOFLAGS ?= -buildvcs=false

.PHONY: all build host plugins manifest run test vet fmt proto clean new-plugin

all: build

build: host plugins manifest

host:
	$(GO) build -o $(BIN)/kbs-host ./host/cmd/kbs-host
	$(GO) build -o $(BIN)/kbs-client ./host/cmd/kbs-client

plugins:
	@mkdir -p $(BIN)/plugins
	@set -e; for p in $(PLUGINS); do \
		kind=$${p%%/*}; name=$${p##*/}; \
		echo "go build plugins/$$p -> bin/plugins/kbs-plugin-$$kind-$$name"; \
		$(GO) build -o $(BIN)/plugins/kbs-plugin-$$kind-$$name ./plugins/$$p/cmd/kbs-plugin-$$kind-$$name; \
	done

# The host refuses any plugin binary whose SHA-256 is not in the manifest.
manifest: host plugins
	$(BIN)/kbs-host plugins manifest $(BIN)/plugins

run: build
	$(BIN)/kbs-host --dev --plugin-dir $(BIN)/plugins $(RUN_ARGS)

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

# A new plugin from the template: make new-plugin KIND=verifier NAME=acme [DIR=/path]
new-plugin:
	scripts/new-plugin.sh $(KIND) $(NAME) $(DIR)

clean:
	rm -rf $(BIN)
