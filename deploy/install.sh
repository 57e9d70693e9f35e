#!/usr/bin/env bash
# Installs pod-identity-webhook into the cluster of the current kubeconfig context, from
# this clone, with kustomize (kubectl apply -k) or with the Helm chart. Prints every
# command it runs (lines starting with "+"), then how to verify the installation.
#
# Usage: deploy/install.sh [--kustomize | --helm] [OPTIONS]
#   --kustomize            kubectl apply -k deploy/base (default); with options below, an
#                          overlay of it written to a temp dir and printed
#   --helm                 helm upgrade --install pod-identity-webhook deploy/helm/pod-identity-webhook
#   --namespace NS         where everything goes (default pod-identity-webhook); created,
#                          with the label app.kubernetes.io/part-of=pod-identity-webhook,
#                          unless it exists
#   --image REF            the webhook image, REPOSITORY:TAG or REPOSITORY@sha256:DIGEST
#                          (default ghcr.io/pod-identity-webhook/pod-identity-webhook with
#                          the manifests' tag)
#   --with-site-bundle     also the example site bundle (examples/session-name) as a bundle
#                          ConfigMap: deploy/examples/site-bundle, or Helm siteBundles
#   --watch-namespaces     --watch-namespaces=true and the RBAC it needs:
#                          deploy/components/watch-namespaces, or Helm flags.cluster.watch-namespaces
#   --dry-run=MODE         server, client or none (default none), passed to kubectl (and
#                          helm); server needs the namespace to exist already
#   --kubeconfig FILE      kubeconfig to use (default $KUBECONFIG or ~/.kube/config),
#                          its current context
#   -h, --help             this text
#
# Needs kubectl, the cluster reachable, and cert-manager's CRDs (not checked with
# --dry-run=client). --helm also needs Helm 3.13+: $HELM, else helm on PATH, else the
# build deploy/scripts/tools.sh caches (built with Go on first use).
# Environment: KUBECTL=path, HELM=path.
# Remove it again with deploy/uninstall.sh and the same options.
#
# Examples:
#   deploy/install.sh --image registry.example.com/pod-identity-webhook:v1.2.3
#   deploy/install.sh --helm --namespace piw-system --with-site-bundle --dry-run=server
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
script=install.sh
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
# shellcheck source=deploy/scripts/tools.sh
. "$root/deploy/scripts/tools.sh"
# shellcheck source=deploy/scripts/install-lib.sh
. "$root/deploy/scripts/install-lib.sh"

parse_options "$@"
check_prerequisites
namespace_state
if [ "$dry_run" = server ] && [ "$ns_exists" = false ]; then
	die "--dry-run=server: namespace $namespace does not exist, and the API server refuses (even in a dry run) every object in a namespace that does not exist. Create it first (kubectl create namespace $namespace; a real install does that) or use --dry-run=client."
fi
say "installing into namespace $namespace with $mode$(dry_run_note)"
make_work

case $mode in
kustomize)
	with_ns=true
	if [ "$ns_exists" = true ] && [ "$ns_ours" = false ]; then
		say "namespace $namespace exists and was not created by install.sh (no label $owner_label=$owner_value): it is used as it is, and uninstall.sh keeps it"
		with_ns=false
	fi
	dir=$(kustomize_dir "$with_ns")
	print_kustomization "$dir"
	kc apply -k "$dir" ${dry_run_args[@]+"${dry_run_args[@]}"}
	;;
helm)
	if [ "$ns_exists" = false ]; then
		# Not helm's --create-namespace: the label tells uninstall.sh the namespace is ours.
		ns_manifest="apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/name: pod-identity-webhook
    $owner_label: $owner_value"
		show "$kubectl_bin" ${kubectl_args[@]+"${kubectl_args[@]}"} apply ${dry_run_args[@]+"${dry_run_args[@]}"} -f - | sed 's/$/ <<EOF/'
		printf '%s\nEOF\n' "$ns_manifest"
		printf '%s\n' "$ns_manifest" | k apply ${dry_run_args[@]+"${dry_run_args[@]}"} -f -
	fi
	helm_chart_args
	if [ "$dry_run" = none ]; then
		hm upgrade --install "$release" "${helm_chart_args[@]}"
	else
		# Helm's dry run renders against the cluster but sends no object to the API
		# server: kubectl dry-runs the manifest Helm would install.
		hm upgrade --install "$release" "${helm_chart_args[@]}" ${dry_run_args[@]+"${dry_run_args[@]}"} >"$work/helm.out"
		awk '/^MANIFEST:/ { print "MANIFEST: (omitted here: kubectl dry-runs it below)"; skip = 1; next }
			/^NOTES:/ { skip = 0 } !skip' "$work/helm.out"
		awk '/^MANIFEST:/ { on = 1; next } /^NOTES:/ { on = 0 } on' "$work/helm.out" >"$work/manifest.yaml"
		grep -q '^kind:' "$work/manifest.yaml" || die "helm printed no MANIFEST section (output in $work/helm.out)"
		kc apply ${dry_run_args[@]+"${dry_run_args[@]}"} --namespace "$namespace" -f "$work/manifest.yaml"
	fi
	;;
esac

kh=$(kubectl_hint)
kcfg=${kubeconfig:-${KUBECONFIG:-}}
kcfg=${kcfg%%:*}
eval_flags="--kubeconfig ${kcfg:-~/.kube/config} --namespace $namespace --watch-config-map"
[ "$watch_namespaces" = false ] || eval_flags="$eval_flags --watch-namespaces"
[ "$site_bundle" = false ] || eval_flags="$eval_flags --bundle deploy/examples/site-bundle/session-name"
echo
if [ "$dry_run" = none ]; then
	say "done. Verify:"
else
	say "dry run ($dry_run) done: nothing was changed. After a real install, verify:"
fi
cat <<EOF
  # 1. Both replicas ready (needs cert-manager to have issued the certificate):
  $kh -n $namespace rollout status deploy/pod-identity-webhook
EOF
[ "$site_bundle" = false ] || cat <<EOF
  #    The site bundle accepted (an Event on its ConfigMap):
  $kh -n $namespace get events --field-selector involvedObject.name=pod-identity-webhook-bundle-session-name
EOF
cat <<EOF
  # 2. What the webhook does to a pod (one whose ServiceAccount has an
  #    eks.amazonaws.com/role-arn annotation; add the mutation flags you gave the
  #    Deployment, e.g. --aws-default-region):
  $kh -n APP_NAMESPACE get pod POD -o yaml |
    pod-identity-webhook eval --pod - $eval_flags -o explain
EOF
