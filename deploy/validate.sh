#!/usr/bin/env bash
# Checks the deployment artefacts offline (no API server, no Docker):
#
#   * kustomize: deploy/base, deploy/examples/site-bundle and the watch-namespaces
#     component render; the site-bundle copies equal examples/session-name;
#   * Helm (built from the Go module proxy into a cache outside the clone, see
#     deploy/scripts/tools.sh): `helm lint --strict` and `helm template` with the default
#     values and with each file in the chart's ci/ (one of which sets every flag), and
#     renderings that must fail (unknown flag, --in-cluster=true, a bad bundle key);
#   * deploy/manifestcheck on every rendering: apiVersion/kind/metadata.name, strict
#     decoding of the core kinds, the Deployment's args loaded by the webhook's own flag
#     set and configuration loader, CEL matchConditions, the objects' cross-references
#     and hardening; the chart's defaults equal the kustomize base; the chart's
#     flag-defaults.yaml and values.yaml cover every flag with the binary's defaults;
#   * when the binary builds and has `serve`, the args are also checked against
#     `pod-identity-webhook serve --help`.
#   * deploy/install.sh and deploy/uninstall.sh parse (bash -n), their --help runs,
#     shellcheck passes (when installed), deploy/README.md quotes install.sh --help
#     verbatim, and the overlay install.sh writes for another namespace renders and passes
#     manifestcheck (TestInstallScript in test/e2e runs the scripts against an API server).
#
# Usage: deploy/validate.sh        (from anywhere; exits non-zero when a check fails)
# Environment: HELM=path (use this helm), HELM_VERSION, DEPLOY_TOOLS_CACHE, WEBHOOK_BIN=path
# (use this binary for `serve --help`), DEPLOY_VALIDATE_SKIP_BINARY=1 (don't build it).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
# shellcheck source=deploy/scripts/tools.sh
. deploy/scripts/tools.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
started=$(date +%s)

# check NAME COMMAND...: runs COMMAND, counts and reports the outcome, keeps its output.
check() {
	local name=$1
	shift
	if "$@" >"$work/out" 2>"$work/err"; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
		cat "$work/out" "$work/err" | sed 's/^/     /'
	fi
}

# must_fail NAME WANT COMMAND...: COMMAND must fail and say WANT.
must_fail() {
	local name=$1 want=$2
	shift 2
	if "$@" >"$work/out" 2>&1; then
		echo "expected a failure, got success" >>"$work/out"
	elif grep -qF -- "$want" "$work/out"; then
		passed=$((passed + 1))
		echo "ok   $name"
		return
	else
		echo "expected the message: $want" >>"$work/out"
	fi
	failed=$((failed + 1))
	echo "FAIL $name"
	sed 's/^/     /' "$work/out"
}

chart=deploy/helm/pod-identity-webhook

# ---- tools ----------------------------------------------------------------------
t0=$(date +%s)
if ! helm=$(ensure_helm); then
	echo "FAIL helm: could not build helm $HELM_VERSION"
	exit 1
fi
echo "--   helm: $helm ($("$helm" version --short 2>/dev/null), $(($(date +%s) - t0)) s)"

t0=$(date +%s)
if ! go build -o "$work/manifestcheck" ./deploy/manifestcheck >"$work/out" 2>&1; then
	echo "FAIL build deploy/manifestcheck"
	sed 's/^/     /' "$work/out"
	exit 1
fi
mc="$work/manifestcheck"
echo "--   manifestcheck built ($(($(date +%s) - t0)) s)"

helpflags=()
if [ "${DEPLOY_VALIDATE_SKIP_BINARY:-}" != 1 ]; then
	t0=$(date +%s)
	bin=${WEBHOOK_BIN:-}
	if [ -z "$bin" ] && go build -o "$work/pod-identity-webhook" ./cmd/pod-identity-webhook >"$work/out" 2>&1; then
		bin="$work/pod-identity-webhook"
	fi
	if [ -z "$bin" ]; then
		echo "--   the webhook binary does not build now; args are checked against config/config.go only"
	elif "$bin" serve --help >"$work/serve-help.txt" 2>&1 && grep -q -- '--port' "$work/serve-help.txt"; then
		helpflags=(-flags-from "$work/serve-help.txt")
		echo "--   args are also checked against \`serve --help\` ($(($(date +%s) - t0)) s)"
	else
		echo "--   the binary has no \`serve\` command yet; args are checked against config/config.go only"
	fi
fi

# ---- kustomize --------------------------------------------------------------------
check "kustomize: deploy/base renders" kustomize_build deploy/base
cp "$work/out" "$work/base.yaml"
check "kustomize: deploy/examples/site-bundle renders" kustomize_build deploy/examples/site-bundle
cp "$work/out" "$work/site-bundle.yaml"
mkdir -p "$work/overlay-watch-namespaces"
# kustomize refuses absolute paths: refer to the clone relatively.
rel=$(realpath --relative-to="$work/overlay-watch-namespaces" "$root")
cat >"$work/overlay-watch-namespaces/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/deploy/base
components:
  - $rel/deploy/components/watch-namespaces
EOF
check "kustomize: deploy/components/watch-namespaces renders" kustomize_build "$work/overlay-watch-namespaces"
cp "$work/out" "$work/watch-namespaces.yaml"

drift() {
	local f rc=0
	for f in manifest.yaml session_name.rego session_name_test.rego; do
		cmp "examples/session-name/$f" "deploy/examples/site-bundle/session-name/$f" || {
			echo "deploy/examples/site-bundle/session-name/$f differs from examples/session-name/$f: copy it again"
			rc=1
		}
	done
	for f in examples/session-name/*.rego examples/session-name/manifest.yaml; do
		[ -e "deploy/examples/site-bundle/session-name/$(basename "$f")" ] || {
			echo "$f is not in deploy/examples/site-bundle/session-name (and its kustomization)"
			rc=1
		}
	done
	return $rc
}
check "kustomize: site-bundle files equal examples/session-name" drift

# ---- install.sh / uninstall.sh ------------------------------------------------------
# Static checks only: TestInstallScript (test/e2e) runs them against an API server.
scripts() {
	local s rc=0
	for s in deploy/install.sh deploy/uninstall.sh deploy/scripts/install-lib.sh; do
		bash -n "$s" || { echo "$s does not parse"; rc=1; }
	done
	for s in install.sh uninstall.sh; do
		# --help needs neither kubectl nor a cluster.
		if ! KUBECTL=/nonexistent "deploy/$s" --help >"$work/help-$s" 2>&1; then
			echo "deploy/$s --help failed:"
			cat "$work/help-$s"
			rc=1
		elif ! grep -q "^Usage: deploy/$s " "$work/help-$s"; then
			echo "deploy/$s --help prints no 'Usage: deploy/$s' line"
			rc=1
		fi
	done
	if command -v shellcheck >/dev/null 2>&1; then
		shellcheck -x deploy/install.sh deploy/uninstall.sh deploy/scripts/install-lib.sh || rc=1
	else
		echo "(shellcheck not installed: skipped)"
	fi
	return $rc
}
check "install.sh, uninstall.sh: bash -n, --help (and shellcheck when installed)" scripts

# deploy/README.md quotes `install.sh --help` between these two lines, verbatim.
readme_usage() {
	sed -n '/^<!-- install.sh --help -->$/,/^<!-- end install.sh --help -->$/p' deploy/README.md |
		sed '1,2d;$d' | sed '$d' >"$work/readme-usage"
	if [ ! -s "$work/readme-usage" ]; then
		echo "deploy/README.md has no install.sh --help block (between <!-- install.sh --help --> and <!-- end install.sh --help -->, in a \`\`\`text fence)"
		return 1
	fi
	diff -u "$work/readme-usage" "$work/help-install.sh" ||
		{ echo "deploy/README.md quotes a different install.sh --help: paste the new one"; return 1; }
}
check "deploy/README.md quotes install.sh --help verbatim" readme_usage

# The overlay install.sh writes for a namespace other than the default renders, and passes
# manifestcheck (below) like deploy/base: the namespace reaches the webhook's clientConfig
# and namespaceSelector, the CA injection annotation, the Certificate and the RBAC.
install_overlay() {
	(
		# shellcheck disable=SC2034 # read by install-lib.sh
		script=install.sh
		# shellcheck source=deploy/scripts/install-lib.sh
		. deploy/scripts/install-lib.sh
		parse_options --namespace piw-system --image registry.example.com/pod-identity-webhook:v1.2.3 --with-site-bundle --watch-namespaces
		work=$1
		dir=$(kustomize_dir true)
		kustomize_build "$dir"
	) >"$work/install-overlay.yaml" || return 1
	local rc=0
	grep -q '^ *image: registry.example.com/pod-identity-webhook:v1.2.3$' "$work/install-overlay.yaml" || { echo "--image did not reach the Deployment"; rc=1; }
	grep -A8 '^kind: Namespace$' "$work/install-overlay.yaml" | grep -q '^  name: piw-system$' || { echo "the Namespace is not piw-system"; rc=1; }
	if grep -n 'pod-identity-webhook\.pod-identity-webhook\|namespace: pod-identity-webhook$\|pod-identity-webhook/pod-identity-webhook\|- pod-identity-webhook$' "$work/install-overlay.yaml"; then
		echo "the default namespace is left in the lines above"
		rc=1
	fi
	grep -q 'pod-identity-webhook.io/bundle' "$work/install-overlay.yaml" || { echo "no site bundle ConfigMap"; rc=1; }
	grep -q -- '--watch-namespaces=true' "$work/install-overlay.yaml" || { echo "no --watch-namespaces=true"; rc=1; }
	return $rc
}
mkdir -p "$work/install"
check "install.sh: its kustomize overlay (--namespace --image --with-site-bundle --watch-namespaces) renders" install_overlay "$work/install"

# ---- helm -------------------------------------------------------------------------
check "helm lint --strict (default values)" "$helm" lint --strict "$chart"
release=(pod-identity-webhook "$chart" --namespace pod-identity-webhook)
check "helm template (default values)" "$helm" template "${release[@]}"
cp "$work/out" "$work/helm-default.yaml"
for values in "$chart"/ci/*-values.yaml; do
	name=$(basename "$values" -values.yaml)
	extra=()
	if [ "$name" = extras ]; then
		# As deploy/README.md shows: a site bundle from files.
		extra=(--set-file 'siteBundles.session-name.manifest\.yaml=examples/session-name/manifest.yaml'
			--set-file 'siteBundles.session-name.session_name\.rego=examples/session-name/session_name.rego'
			--set-file 'siteBundles.session-name.session_name_test\.rego=examples/session-name/session_name_test.rego')
	fi
	check "helm lint --strict (ci/$name)" "$helm" lint --strict "$chart" -f "$values" "${extra[@]}"
	check "helm template (ci/$name)" "$helm" template piw "$chart" --namespace piw-system -f "$values" "${extra[@]}"
	cp "$work/out" "$work/helm-$name.yaml"
done
must_fail "helm template refuses an unknown flag" "not a flag of pod-identity-webhook" \
	"$helm" template "${release[@]}" --set flags.mutation.aws-region=eu-west-1
must_fail "helm template refuses --in-cluster=true" "in-cluster: must be false" \
	"$helm" template "${release[@]}" --set flags.server.in-cluster=true
must_fail "helm template refuses a bundle key other than manifest.yaml/*.rego" "only manifest.yaml and *.rego" \
	"$helm" template "${release[@]}" --set 'siteBundles.x.manifest\.yaml=a' --set 'siteBundles.x.README\.md=b'
must_fail "helm template needs tls.existingSecret without cert-manager" "tls.existingSecret is required" \
	"$helm" template "${release[@]}" --set certManager.enabled=false --set tls.caBundle=eA==

# ---- Dockerfile (no Docker engine here: static checks) -------------------------------
dockerfile() {
	local rc=0 module want got gomod img dir pkgs todo p imp ignored
	module=$(awk '$1 == "module" { print $2; exit }' go.mod)
	want="$module/cli.Version"
	got=$(grep -o -- '-X [^ "]*' Dockerfile | awk '{ print $2 }' | cut -d= -f1)
	[ "$got" = "$want" ] || { echo "Dockerfile: ldflags set '$got', want '$want'"; rc=1; }
	grep -Eq '^(var )?[[:space:]]*Version[[:space:]]*=' cli/*.go || { echo "cli: no Version variable for the ldflags"; rc=1; }
	gomod=$(awk '$1 == "go" { split($2, v, "."); print v[1] "." v[2]; exit }' go.mod)
	img=$(sed -n 's/^FROM .*golang:\([0-9.]*\).* AS build.*/\1/p' Dockerfile)
	[ "$img" = "$gomod" ] || { echo "Dockerfile: golang:$img, go.mod says go $gomod"; rc=1; }
	grep -q '^FROM gcr.io/distroless/static-debian12:nonroot$' Dockerfile || { echo "Dockerfile: final stage must be distroless static nonroot"; rc=1; }
	grep -q '^USER 65532:65532$' Dockerfile || { echo "Dockerfile: USER 65532:65532 missing"; rc=1; }
	grep -q '^ENTRYPOINT \["/usr/local/bin/pod-identity-webhook"\]$' Dockerfile || { echo "Dockerfile: ENTRYPOINT"; rc=1; }
	grep -q 'CGO_ENABLED=0' Dockerfile && grep -q -- '-trimpath' Dockerfile || { echo "Dockerfile: CGO_ENABLED=0 and -trimpath"; rc=1; }
	# The main module's packages the binary imports (read from the sources, so that this
	# works while go.mod is being edited) must all be in the build context.
	pkgs=" cmd/pod-identity-webhook "
	todo="cmd/pod-identity-webhook"
	while [ -n "$todo" ]; do
		set -- $todo
		p=$1
		shift
		todo="$*"
		for imp in $(find "$p" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec grep -ho "\"$module/[^\"]*\"" {} + 2>/dev/null | tr -d '"' | sort -u); do
			dir=${imp#"$module"/}
			case $pkgs in *" $dir "*) ;; *) pkgs="$pkgs$dir "; todo="$todo $dir" ;; esac
		done
	done
	for dir in $pkgs; do
		while read -r ignored; do
			case $ignored in '' | '#'* | '!'*) continue ;; esac
			case $dir/ in "$ignored"/* | "${ignored#/}"/*)
				echo ".dockerignore: '$ignored' leaves out $dir, which the binary imports"
				rc=1
				;;
			esac
		done <.dockerignore
	done
	echo "the binary imports: $pkgs"
	return $rc
}
check "Dockerfile and .dockerignore (static)" dockerfile

# ---- manifests --------------------------------------------------------------------
check "manifestcheck: kustomize renderings" \
	"$mc" docs "${helpflags[@]}" "$work/base.yaml" "$work/site-bundle.yaml" "$work/watch-namespaces.yaml" "$work/install-overlay.yaml"
check "manifestcheck: helm renderings" \
	"$mc" docs "${helpflags[@]}" "$work/helm-default.yaml" "$work/helm-extras.yaml" "$work/helm-no-cert-manager.yaml"
check "manifestcheck: ci/all-flags passes every flag" \
	"$mc" docs -all-flags "${helpflags[@]}" "$work/helm-all-flags.yaml"
check "manifestcheck: helm defaults render what deploy/base does" \
	"$mc" same "$work/base.yaml" "$work/helm-default.yaml"
check "manifestcheck: flag-defaults.yaml and values.yaml cover every flag with the binary's defaults" \
	"$mc" values "$chart/values.yaml" "$chart/flag-defaults.yaml" "$chart/templates/_helpers.tpl"

echo "validate: $passed passed, $failed failed ($(($(date +%s) - started)) s)"
[ "$failed" -eq 0 ]
