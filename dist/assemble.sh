#!/usr/bin/env bash
# Assemble a distribution: OUT/bin/kbs-host, OUT/bin/kbs-client, and
# OUT/plugins/ holding exactly the chosen plugins and their manifest.sha256.
#
#   dist/assemble.sh OUT [kind/name ...]      (no plugin named: every in-tree plugin)
#
# `make dist PLUGINS="verifier/snp resource/fs token/ear"` calls it. Binaries are
# static (CGO_ENABLED=0) except resource/kms, whose PKCS#11 support (crypto11)
# needs cgo and the C library at run time.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
if [ $# -lt 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUT [kind/name ...]" >&2
	exit 2
fi
out=$1
shift
case $out in /*) ;; *) out=$PWD/$out ;; esac

available=()
for m in "$root"/plugins/*/*/cmd/kbs-plugin-*/main.go; do
	rel=${m#"$root"/plugins/}
	available+=("${rel%%/cmd/*}")
done

chosen=()
if [ $# -eq 0 ]; then
	chosen=("${available[@]}")
fi
for p in "$@"; do
	found=
	for a in "${available[@]}"; do
		[ "$p" = "$a" ] && found=1
	done
	if [ -z "$found" ]; then
		echo "dist: unknown plugin \"$p\"; in-tree plugins are: ${available[*]}" >&2
		exit 2
	fi
	for c in "${chosen[@]}"; do
		[ "$p" = "$c" ] && continue 2
	done
	chosen+=("$p")
done

cd "$root"
mkdir -p "$out/bin"
# Exactly the chosen plugins: nothing left from an earlier run.
rm -rf "$out/plugins"
mkdir -p "$out/plugins"

build() { # cgo output package
	echo "go build $3 -> ${2#"$out"/}"
	CGO_ENABLED=$1 "$GO" build -trimpath -ldflags="-s -w" -o "$2" "$3"
}
build 0 "$out/bin/kbs-host" ./host/cmd/kbs-host
build 0 "$out/bin/kbs-client" ./host/cmd/kbs-client
for p in "${chosen[@]}"; do
	kind=${p%%/*}
	name=${p##*/}
	cgo=0
	[ "$p" = resource/kms ] && cgo=1
	build "$cgo" "$out/plugins/kbs-plugin-$kind-$name" "./plugins/$p/cmd/kbs-plugin-$kind-$name"
done
"$out/bin/kbs-host" plugins manifest "$out/plugins"
