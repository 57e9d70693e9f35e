#!/usr/bin/env bash
# Builds kube-apiserver and etcd from this tools module and caches them outside the
# clone, keyed by go.mod, go.sum, this script and the Go version, so that a second
# run (or a fresh clone on the same machine) reuses them in well under a second.
#
# Prints the directory that holds the two binaries on stdout; progress goes to stderr.
# KUBEBINS_CACHE overrides the cache root (default: $HOME/.cache/pod-identity-webhook/kubebins).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { sub(/^v/, "", $2); print $2; exit }' go.mod)
[ -n "$kube_version" ] || { echo "build.sh: cannot read the k8s.io/kubernetes version from $here/go.mod" >&2; exit 2; }
key=$( { cat go.mod go.sum build.sh; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
root=${KUBEBINS_CACHE:-$HOME/.cache/pod-identity-webhook/kubebins}
out="$root/$key"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
	echo "kubebins: reusing $out" >&2
	echo "$out"
	exit 0
fi

mkdir -p "$root"
tmp=$(mktemp -d "$root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "kubebins: building kube-apiserver v$kube_version and etcd into $out (cold: 15-20 min on 2 cores)" >&2
export CGO_ENABLED=0
minor=$(echo "$kube_version" | cut -d. -f2)
v=k8s.io/component-base/version
# The version ldflags matter: without them the server reports v0.0.0-master and
# version-parsing clients fail.
ldflags="-s -w -X $v.gitVersion=v$kube_version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=2026-01-01T00:00:00Z"
start=$(date +%s)
go build -trimpath -ldflags="$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
echo "kubebins: built in $(( $(date +%s) - start )) s" >&2
# Publish atomically: a concurrent or interrupted build never leaves half a cache entry.
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
