# Sourced by deploy/validate.sh and deploy/render.sh: finds or builds the tools the
# deployment checks need, without installing anything globally. Builds go to a cache
# outside the clone, one directory per tool version, published atomically:
#   ${DEPLOY_TOOLS_CACHE:-$HOME/.cache/pod-identity-webhook/tools}/helm-<version>/helm
# Progress goes to stderr; each function prints the tool's path on stdout.

HELM_VERSION=${HELM_VERSION:-v3.22.0}
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.5.0}
DEPLOY_TOOLS_CACHE=${DEPLOY_TOOLS_CACHE:-$HOME/.cache/pod-identity-webhook/tools}

# go_install_cached NAME VERSION PACKAGE LDFLAGS: go install PACKAGE@VERSION into the cache.
go_install_cached() {
	local name=$1 version=$2 pkg=$3 ldflags=$4
	local out="$DEPLOY_TOOLS_CACHE/$name-$version"
	if [ -x "$out/$name" ]; then
		echo "$out/$name"
		return 0
	fi
	command -v go >/dev/null || { echo "tools: go is needed to build $name $version" >&2; return 1; }
	mkdir -p "$DEPLOY_TOOLS_CACHE"
	local tmp start
	tmp=$(mktemp -d "$DEPLOY_TOOLS_CACHE/.build-$name-XXXXXX")
	start=$(date +%s)
	echo "tools: building $name $version from the Go module proxy into $out (cold: several minutes on 2 cores)" >&2
	# GOFLAGS/GOWORK cleared: the tool is built with its own go.mod, not this project's.
	if ! (cd "$tmp" && GOFLAGS= GOWORK=off CGO_ENABLED=0 GOBIN="$tmp" \
		go install -trimpath -ldflags="$ldflags" "$pkg@$version" >&2); then
		rm -rf "$tmp"
		echo "tools: building $name $version failed" >&2
		return 1
	fi
	echo "tools: built $name $version in $(($(date +%s) - start)) s" >&2
	rm -rf "$out"
	mv "$tmp" "$out" 2>/dev/null || { rm -rf "$tmp"; [ -x "$out/$name" ] || return 1; } # a concurrent build won
	echo "$out/$name"
}

ensure_helm() {
	if [ -n "${HELM:-}" ]; then
		echo "$HELM"
		return 0
	fi
	go_install_cached helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
		"-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}

# kustomize_build DIR: renders a kustomization with kubectl's kustomize when there is a
# kubectl, else a kustomize from PATH, else one built into the cache.
kustomize_build() {
	if [ -z "${KUSTOMIZE_CMD:-}" ]; then
		if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
			KUSTOMIZE_CMD="kubectl kustomize"
		elif command -v kustomize >/dev/null 2>&1; then
			KUSTOMIZE_CMD="kustomize build"
		else
			local k
			k=$(go_install_cached kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 "-s -w") || return 1
			KUSTOMIZE_CMD="$k build"
		fi
	fi
	$KUSTOMIZE_CMD "$1"
}
