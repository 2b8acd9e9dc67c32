#!/usr/bin/env bash
# new-plugin.sh KIND NAME [DIR] — start a kbs-host plugin from the template.
#
# Copies sdk/examples/verifier-template to DIR (default plugins/KIND/NAME in
# this repository) and renames it: package NAME, binary
# cmd/kbs-plugin-KIND-NAME, module path
#   github.com/gokbs/kbs/plugins/KIND/NAME      inside this repository,
#   $MODULE or example.com/kbs-plugin-KIND-NAME  anywhere else,
# with a replace directive to this checkout's SDK.
#
#   scripts/new-plugin.sh verifier acme
#   MODULE=github.com/acme/kbs-acme scripts/new-plugin.sh verifier acme ~/src/kbs-acme
set -euo pipefail

usage() { echo "usage: $0 KIND NAME [DIR]   (KIND: verifier; NAME: [a-z][a-z0-9]*)" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
kind=$1 name=$2
case $kind in
	verifier) ;;
	resource|token) echo "$0: only verifier has a template so far" >&2; exit 2 ;;
	*) usage ;;
esac
# The name is a Go package name and part of the binary's name.
[[ $name =~ ^[a-z][a-z0-9]*$ ]] || usage
[ "$name" != template ] || { echo "$0: pick another name than the template's" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/sdk/examples/verifier-template
dir=${3:-$root/plugins/$kind/$name}
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
	echo "$0: $dir exists and is not empty" >&2
	exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case $dir/ in
	"$root"/*)
		module=github.com/gokbs/kbs/plugins/$kind/$name
		[ "$dir" = "$root/plugins/$kind/$name" ] || module=${MODULE:-$module}
		sdk=$(realpath --relative-to="$dir" "$root/sdk")
		inside=1 ;;
	*)
		module=${MODULE:-example.com/kbs-plugin-$kind-$name}
		sdk=$root/sdk
		inside= ;;
esac

cp -R "$src"/. "$dir"/
rm -f "$dir"/kbs-plugin-*
mv "$dir/template.go" "$dir/$name.go"
mv "$dir/template_test.go" "$dir/${name}_test.go"
mv "$dir/cmd/kbs-plugin-verifier-template" "$dir/cmd/kbs-plugin-$kind-$name"
# The module path first, then the name everywhere else.
find "$dir" -type f \( -name '*.go' -o -name go.mod \) -print0 |
	xargs -0 sed -i -e "s|github.com/example/kbs-verifier-template|$module|g" -e "s|template|$name|g"
sed -i "s|^replace github.com/gokbs/kbs/sdk => .*|replace github.com/gokbs/kbs/sdk => $sdk|" "$dir/go.mod"
cat >"$dir/README.md" <<README
# $kind/$name

Verifier plugin for <your TEE>, started from kbs's verifier template. It
imports the SDK only.

Binary: \`kbs-plugin-$kind-$name\`. TEE types: <the kbs-types names in TEE>.

## What it checks

<The evidence format, the signature chain to the vendor's root, the binding
of the report data (pad(D, n)) and of the init-data.>

## Settings

\`\`\`toml
[[plugins.$kind]]
name = "$name"
[plugins.$kind.config]
min_svn = 0
\`\`\`

## Claims

<The claims and their names.>

## Tests

\`GOWORK=off go test ./...\` runs the unit tests and the SDK's conformance
suite (\`plugintest.VerifierConformance\`).
README

echo "created $dir (module $module)"
echo "next:"
echo "  cd $dir && GOWORK=off go test ./..."
if [ -n "$inside" ]; then
	echo "  add it to the workspace: go work use ${dir#"$root"/}"
	echo "  make build then builds bin/plugins/kbs-plugin-$kind-$name"
else
	echo "  GOWORK=off go build -o kbs-plugin-$kind-$name ./cmd/kbs-plugin-$kind-$name"
	echo "  install: see docs/plugin-authoring.md (binary + manifest.sha256 entry)"
fi
