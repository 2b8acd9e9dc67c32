#!/usr/bin/env bash
# check-plugin-deps.sh — every plugin module depends on the SDK, never on the
# host: a vendor must be able to build a plugin with the SDK alone.
#
# For each module under plugins/ and sdk/examples/ (or the module
# directories given as arguments) it fails when the module requires or
# replaces github.com/gokbs/kbs/host, or when any package it builds,
# tests included, imports a package of it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
host=github.com/gokbs/kbs/host

if [ $# -gt 0 ]; then
	modules=("$@")
else
	mapfile -t modules < <(find plugins sdk/examples -name go.mod -not -path '*/testdata/*' -printf '%h\n' 2>/dev/null | sort)
fi
# Modules of the workspace are listed in its context; the others (the
# template, a module not yet added) on their own.
mapfile -t workspace < <(go work edit -json 2>/dev/null | sed -n 's/.*"DiskPath": "\.\/\(.*\)".*/\1/p')
in_workspace() {
	local m
	for m in "${workspace[@]}"; do [ "$m" = "$1" ] && return 0; done
	return 1
}

failed=0
for mod in "${modules[@]}"; do
	mod=${mod%/}
	[ -n "$(find "$mod" -name '*.go' -print -quit)" ] || continue
	env=()
	in_workspace "$mod" || env=(GOWORK=off GOFLAGS=-mod=mod)
	# -e: a forbidden import is reported even when it does not compile
	# (host's packages are internal).
	if ! deps=$(cd "$mod" && env "${env[@]}" go list -e -deps -test -f '{{.ImportPath}}' ./...) ||
		! modfile=$(cd "$mod" && env "${env[@]}" go mod edit -json); then
		echo "FAIL $mod: go list failed" >&2
		failed=1
		continue
	fi
	problems=$(
		grep -E "\"Path\": \"$host(/|\")" <<<"$modfile" | sed 's/^[[:space:]]*/go.mod: /' || true
		grep -E "^$host(/|$)" <<<"$deps" | sed 's/^/imports: /' || true
	)
	if [ -n "$problems" ]; then
		echo "FAIL $mod depends on the host:" >&2
		echo "$problems" | sort -u | sed 's/^/    /' >&2
		failed=1
	else
		echo "ok   $mod"
	fi
done
exit $failed
