# shellcheck shell=bash disable=SC2034,SC2154
# Sourced by deploy/install.sh and deploy/uninstall.sh: option parsing, prerequisite
# checks, the kustomize overlay and the Helm arguments both scripts derive from the same
# options, so that uninstall.sh with install.sh's options removes what install.sh made.
#
# Expects: $root (the clone), $script (install.sh or uninstall.sh), a usage() function.

# ---- options ----------------------------------------------------------------------
mode=kustomize
namespace=pod-identity-webhook
image=""
site_bundle=false
watch_namespaces=false
dry_run=none
kubeconfig=""
keep_namespace=false # uninstall.sh only

# The names the manifests give the objects (kustomize base; Helm release and fullname).
readonly default_namespace=pod-identity-webhook
readonly release=pod-identity-webhook
readonly default_image_name=ghcr.io/pod-identity-webhook/pod-identity-webhook
# install.sh's mark on a namespace it created (deploy/base's Namespace carries it too);
# uninstall.sh deletes the namespace only when it has it.
readonly owner_label=app.kubernetes.io/part-of
readonly owner_value=pod-identity-webhook

die() {
	echo "$script: $*" >&2
	exit 1
}
usage_error() {
	echo "$script: $* (see $script --help)" >&2
	exit 2
}
say() { echo "$script: $*"; }
indent() { sed 's/^/  /'; }

parse_options() {
	while [ $# -gt 0 ]; do
		case $1 in
		--kustomize) mode=kustomize; shift ;;
		--helm) mode=helm; shift ;;
		--namespace | -n) namespace=${2:-}; [ $# -ge 2 ] || usage_error "$1 needs a value"; shift 2 ;;
		--namespace=*) namespace=${1#*=}; shift ;;
		--image) image=${2:-}; [ $# -ge 2 ] || usage_error "$1 needs a value"; shift 2 ;;
		--image=*) image=${1#*=}; shift ;;
		--with-site-bundle) site_bundle=true; shift ;;
		--watch-namespaces) watch_namespaces=true; shift ;;
		--dry-run) dry_run=${2:-}; [ $# -ge 2 ] || usage_error "$1 needs a value"; shift 2 ;;
		--dry-run=*) dry_run=${1#*=}; shift ;;
		--kubeconfig) kubeconfig=${2:-}; [ $# -ge 2 ] || usage_error "$1 needs a value"; shift 2 ;;
		--kubeconfig=*) kubeconfig=${1#*=}; shift ;;
		--keep-namespace)
			[ "$script" = uninstall.sh ] || usage_error "unknown option $1"
			keep_namespace=true; shift ;;
		-h | --help) usage; exit 0 ;;
		*) usage_error "unknown option $1" ;;
		esac
	done
	case $dry_run in
	server | client | none) ;;
	*) usage_error "--dry-run must be server, client or none, not '$dry_run'" ;;
	esac
	# A DNS-1123 label: what the API server accepts as a namespace name.
	if [ ${#namespace} -gt 63 ] || ! printf '%s' "$namespace" | grep -Eq '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'; then
		usage_error "--namespace '$namespace' is not a valid namespace name (lower-case letters, digits and '-', at most 63)"
	fi
	if [ -n "$image" ]; then
		case $image in
		*[[:space:]]* | :* | @* | */ | *: | *@) usage_error "--image '$image' is not REPOSITORY[:TAG] or REPOSITORY@sha256:DIGEST" ;;
		esac
	fi
	if [ -n "$kubeconfig" ]; then
		[ -r "$kubeconfig" ] || die "--kubeconfig $kubeconfig: no such file (or not readable)"
	fi
}

# image_parts: sets image_repo and one of image_tag / image_digest from --image.
image_repo="" image_tag="" image_digest=""
image_parts() {
	image_repo=$image image_tag="" image_digest=""
	case $image in
	*@*) image_repo=${image%%@*} image_digest=${image#*@} ;;
	*)
		# A ':' after the last '/' is a tag; one before it is a registry port.
		case ${image##*/} in *:*) image_repo=${image%:*} image_tag=${image##*:} ;; esac
		;;
	esac
}

# ---- commands ---------------------------------------------------------------------
kubectl_bin=${KUBECTL:-kubectl}
kubectl_args=()
helm_bin=""
helm_kube_args=()
dry_run_args=()

# show CMD...: prints a command the way a shell would take it back.
show() {
	local out="+" a
	for a in "$@"; do
		case $a in
		'' | *[!A-Za-z0-9_./:=,@%+-]*) out="$out '${a//\'/\'\\\'\'}'" ;;
		*) out="$out $a" ;;
		esac
	done
	echo "$out"
}
# run CMD...: prints the command, then runs it.
run() {
	show "$@"
	"$@"
}
k() { "$kubectl_bin" ${kubectl_args[@]+"${kubectl_args[@]}"} "$@"; }
# kubectl command line as printed and run: `kubectl [--kubeconfig F] ARGS...`.
kc() { run "$kubectl_bin" ${kubectl_args[@]+"${kubectl_args[@]}"} "$@"; }

dry_run_note() { [ "$dry_run" = none ] || echo " (--dry-run=$dry_run)"; }

# Arrays that may be empty are expanded as ${a[@]+"${a[@]}"}: bash before 4.4 (macOS's
# /bin/bash is 3.2) calls "${a[@]}" of an empty array unbound under set -u.

# ---- prerequisites ------------------------------------------------------------------
check_prerequisites() {
	local version out ctx missing
	if ! command -v "$kubectl_bin" >/dev/null 2>&1; then
		die "kubectl not found (looked for '$kubectl_bin' on PATH). Install it (https://kubernetes.io/docs/tasks/tools/) or set KUBECTL=/path/to/kubectl."
	fi
	[ -z "$kubeconfig" ] || kubectl_args=(--kubeconfig "$kubeconfig")
	[ -z "$kubeconfig" ] || helm_kube_args=(--kubeconfig "$kubeconfig")
	version=$("$kubectl_bin" version --client -o yaml 2>/dev/null | awk '$1 == "gitVersion:" { print $2; exit }') || true
	say "kubectl: $(command -v "$kubectl_bin") ${version:-(version unknown)}"

	if [ "$mode" = helm ]; then
		if [ -n "${HELM:-}" ]; then
			helm_bin=$HELM
		elif command -v helm >/dev/null 2>&1; then
			helm_bin=$(command -v helm)
		elif [ -x "$DEPLOY_TOOLS_CACHE/helm-$HELM_VERSION/helm" ] || command -v go >/dev/null 2>&1; then
			# deploy/scripts/tools.sh: the cached build validate.sh uses, or build it.
			helm_bin=$(ensure_helm) || die "building helm $HELM_VERSION failed (see above). Install Helm 3.13 or later (https://helm.sh/docs/intro/install/) or set HELM=/path/to/helm."
		else
			die "helm not found on PATH, and no Go to build it with. Install Helm 3.13 or later (https://helm.sh/docs/intro/install/), set HELM=/path/to/helm, or use --kustomize."
		fi
		[ -x "$helm_bin" ] || command -v "$helm_bin" >/dev/null 2>&1 || die "helm: '$helm_bin' is not executable"
		say "helm: $helm_bin $("$helm_bin" version --short 2>/dev/null || echo '(version unknown)')"
	fi

	ctx=$(k config current-context 2>/dev/null) ||
		die "no current context in ${kubeconfig:-${KUBECONFIG:-$HOME/.kube/config}}: choose one with \`kubectl config use-context NAME\` (or pass --kubeconfig)"
	if ! out=$(k --request-timeout=15s get --raw /version 2>&1); then
		printf "%s\n" "$out" | indent >&2
		die "cannot reach the API server of context '$ctx' (${kubeconfig:-${KUBECONFIG:-$HOME/.kube/config}}): see the error above."
	fi
	version=$(echo "$out" | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n 1)
	say "cluster: context '$ctx', API server ${version:-(version unknown)}"

	missing=""
	out=$(k api-resources --api-group=cert-manager.io -o name 2>/dev/null) || out=""
	for r in issuers.cert-manager.io certificates.cert-manager.io; do
		printf '%s\n' "$out" | grep -qx "$r" || missing="$missing $r"
	done
	if [ -n "$missing" ] && [ "$script" = install.sh ]; then
		if [ "$dry_run" = client ]; then
			say "warning: cert-manager's CRDs are not installed (missing:$missing): kubectl cannot check the Issuers and Certificates, and a real install would fail. See https://cert-manager.io/docs/installation/."
		else
			die "cert-manager is not installed (missing CRDs:$missing): the webhook's serving certificate comes from cert-manager. Install it first (https://cert-manager.io/docs/installation/, e.g. kubectl apply -f https://github.com/cert-manager/cert-manager/releases/latest/download/cert-manager.yaml), or use --dry-run=client."
		fi
	fi
	case $dry_run in
	none) dry_run_args=() ;;
	*) dry_run_args=("--dry-run=$dry_run") ;;
	esac
}

# namespace_state: sets ns_exists (true/false) and ns_ours (true when it carries the label
# install.sh puts on a namespace it creates).
ns_exists=false ns_ours=false
namespace_state() {
	local label
	if label=$(k get namespace "$namespace" -o "jsonpath={.metadata.labels.app\.kubernetes\.io/part-of}" 2>&1); then
		ns_exists=true ns_ours=false
		if [ "$label" = "$owner_value" ]; then ns_ours=true; fi
	elif printf '%s' "$label" | grep -q NotFound; then
		ns_exists=false ns_ours=false
	else
		printf "%s\n" "$label" | indent >&2
		die "cannot read namespace $namespace (see above)"
	fi
}

# ---- kustomize ----------------------------------------------------------------------
work=""
make_work() {
	[ -n "$work" ] && return 0
	work=$(mktemp -d "${TMPDIR:-/tmp}/piw-install.XXXXXX")
	trap 'rm -rf "$work"' EXIT
}

# relative_to_root DIR: the path from DIR to the clone, both physical (kustomize refuses
# absolute paths in resources, and resolves relative ones from the real directory).
relative_to_root() {
	local from to up=""
	from=$(cd "$1" && pwd -P)
	to=$(cd "$root" && pwd -P)
	while [ "$from" != / ]; do
		case $to/ in "$from"/*) break ;; esac
		up="$up../"
		from=$(dirname "$from")
	done
	if [ "$from" = / ]; then
		echo "$up${to#/}"
	else
		echo "$up${to#"$from"/}"
	fi
}

# kustomize_dir WITH_NAMESPACE_OBJECT (call make_work first, outside $(...)): prints the directory to `kubectl apply -k`: deploy/base
# or deploy/examples/site-bundle as they are when no option changes them, else an overlay
# in $work (printed, so that it can be copied into your own repository).
kustomize_dir() {
	local with_ns=$1 base dir rel
	base=deploy/base
	[ "$site_bundle" = false ] || base=deploy/examples/site-bundle
	if [ "$namespace" = "$default_namespace" ] && [ -z "$image" ] && [ "$watch_namespaces" = false ] && [ "$with_ns" = true ]; then
		echo "$root/$base"
		return
	fi
	dir=$work/overlay
	mkdir -p "$dir"
	rel=$(relative_to_root "$dir")
	{
		echo "# Written by deploy/$script; relative paths point into the clone at $root."
		echo "apiVersion: kustomize.config.k8s.io/v1beta1"
		echo "kind: Kustomization"
		[ "$namespace" = "$default_namespace" ] || echo "namespace: $namespace"
		echo "resources:"
		echo "  - $rel/$base"
		if [ "$watch_namespaces" = true ]; then
			echo "components:"
			echo "  - $rel/deploy/components/watch-namespaces"
		fi
		if [ -n "$image" ]; then
			image_parts
			echo "images:"
			echo "  - name: $default_image_name"
			echo "    newName: $image_repo"
			[ -z "$image_tag" ] || echo "    newTag: \"$image_tag\""
			[ -z "$image_digest" ] || echo "    digest: $image_digest"
		fi
		if [ "$namespace" != "$default_namespace" ] || [ "$with_ns" = false ]; then
			echo "patches:"
		fi
		if [ "$with_ns" = false ]; then
			# The namespace exists and is not install.sh's: leave it alone.
			cat <<-EOF
			  - target: {version: v1, kind: Namespace, name: $default_namespace}
			    patch: |-
			      \$patch: delete
			      apiVersion: v1
			      kind: Namespace
			      metadata:
			        name: $default_namespace
			EOF
		elif [ "$namespace" != "$default_namespace" ]; then
			cat <<-EOF
			  - target: {version: v1, kind: Namespace, name: $default_namespace}
			    patch: |-
			      - {op: replace, path: /metadata/name, value: $namespace}
			EOF
		fi
		if [ "$namespace" != "$default_namespace" ]; then
			# Where deploy/base writes its namespace outside metadata.namespace.
			cat <<-EOF
			  - target: {group: admissionregistration.k8s.io, version: v1, kind: MutatingWebhookConfiguration, name: pod-identity-webhook}
			    patch: |-
			      - {op: replace, path: /metadata/annotations/cert-manager.io~1inject-ca-from, value: $namespace/pod-identity-webhook}
			      - {op: replace, path: /webhooks/0/clientConfig/service/namespace, value: $namespace}
			      - {op: replace, path: /webhooks/0/namespaceSelector/matchExpressions/0/values, value: [$namespace, kube-system]}
			      - {op: replace, path: /webhooks/1/clientConfig/service/namespace, value: $namespace}
			  - target: {group: cert-manager.io, version: v1, kind: Certificate, name: pod-identity-webhook}
			    patch: |-
			      - {op: replace, path: /spec/dnsNames, value: [pod-identity-webhook.$namespace.svc, pod-identity-webhook.$namespace.svc.cluster.local]}
			EOF
		fi
	} >"$dir/kustomization.yaml"
	echo "$dir"
}

# print_kustomization DIR: shows a generated overlay.
print_kustomization() {
	case $1 in
	"$work"/*)
		say "kustomization written to $1/kustomization.yaml:"
		sed 's/^/    /' "$1/kustomization.yaml"
		;;
	esac
}

# ---- helm -------------------------------------------------------------------------
# helm_chart_args: sets helm_chart_args, the chart and values for helm upgrade/template.
helm_chart_args=()
helm_chart_args() {
	local f
	helm_chart_args=("$root/deploy/helm/pod-identity-webhook" --namespace "$namespace")
	if [ -n "$image" ]; then
		image_parts
		helm_chart_args+=(--set-string "image.repository=$image_repo")
		[ -z "$image_tag" ] || helm_chart_args+=(--set-string "image.tag=$image_tag")
		[ -z "$image_digest" ] || helm_chart_args+=(--set-string "image.digest=$image_digest")
	fi
	[ "$watch_namespaces" = false ] || helm_chart_args+=(--set flags.cluster.watch-namespaces=true)
	if [ "$site_bundle" = true ]; then
		# The same files deploy/examples/site-bundle puts in its ConfigMap.
		for f in "$root"/deploy/examples/site-bundle/session-name/manifest.yaml "$root"/deploy/examples/site-bundle/session-name/*.rego; do
			f=${f#"$root"/}
			helm_chart_args+=(--set-file "siteBundles.session-name.$(basename "$f" | sed 's/\./\\./g')=$root/$f")
		done
	fi
}
hm() { run "$helm_bin" ${helm_kube_args[@]+"${helm_kube_args[@]}"} "$@"; }

# ---- after ------------------------------------------------------------------------
kubectl_hint() {
	if [ -n "$kubeconfig" ]; then
		echo "kubectl --kubeconfig $kubeconfig"
	else
		echo kubectl
	fi
}
