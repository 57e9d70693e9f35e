#!/usr/bin/env bash
# Removes what deploy/install.sh installed: give it the same options. Prints every command
# it runs (lines starting with "+"). In order:
#   1. the MutatingWebhookConfiguration, first: under failurePolicy Fail, pods would
#      otherwise be refused while the webhook's own pods go away;
#   2. the rest: kubectl delete -k (the same kustomization install.sh applied, but never
#      the Namespace) or helm uninstall;
#   3. the Secrets cert-manager made (pod-identity-webhook-tls, pod-identity-webhook-ca);
#   4. the namespace, if install.sh created it (label
#      app.kubernetes.io/part-of=pod-identity-webhook) and --keep-namespace is not given.
#      Deleting it deletes everything in it, e.g. bundle ConfigMaps you added.
# Missing objects are skipped, so it can be run again.
#
# Usage: deploy/uninstall.sh [--kustomize | --helm] [OPTIONS]
#   --kustomize | --helm   how it was installed (default --kustomize)
#   --namespace NS         default pod-identity-webhook
#   --image REF            accepted for symmetry with install.sh (no effect)
#   --with-site-bundle     also the example site bundle's ConfigMap
#   --watch-namespaces     the kustomization install.sh used had the component
#   --dry-run=MODE         server, client or none (default none), passed to kubectl (and
#                          as --dry-run to helm uninstall)
#   --kubeconfig FILE      kubeconfig to use (default $KUBECONFIG or ~/.kube/config)
#   --keep-namespace       keep the namespace even if install.sh created it
#   -h, --help             this text
#
# Environment: KUBECTL=path, HELM=path (see install.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
script=uninstall.sh
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
# shellcheck source=deploy/scripts/tools.sh
. "$root/deploy/scripts/tools.sh"
# shellcheck source=deploy/scripts/install-lib.sh
. "$root/deploy/scripts/install-lib.sh"

parse_options "$@"
check_prerequisites
namespace_state
say "removing pod-identity-webhook ($mode) from namespace $namespace$(dry_run_note)"
make_work

# 1. Stop the API server calling the webhook.
kc delete mutatingwebhookconfiguration pod-identity-webhook --ignore-not-found ${dry_run_args[@]+"${dry_run_args[@]}"}

# 2. The rest.
case $mode in
kustomize)
	dir=$(kustomize_dir false)
	print_kustomization "$dir"
	kc delete -k "$dir" --ignore-not-found ${dry_run_args[@]+"${dry_run_args[@]}"}
	;;
helm)
	if out=$("$helm_bin" ${helm_kube_args[@]+"${helm_kube_args[@]}"} status "$release" --namespace "$namespace" 2>&1 >/dev/null); then
		helm_dry=()
		[ "$dry_run" = none ] || helm_dry=(--dry-run)
		hm uninstall "$release" --namespace "$namespace" ${helm_dry[@]+"${helm_dry[@]}"}
	elif printf '%s' "$out" | grep -q 'not found'; then
		say "no Helm release $release in namespace $namespace: nothing for helm to uninstall"
	else
		printf "%s\n" "$out" | indent >&2
		die "helm status $release failed (see above)"
	fi
	;;
esac

# 3. cert-manager's Secrets (cert-manager does not delete them with the Certificates).
kc delete secret --namespace "$namespace" pod-identity-webhook-tls pod-identity-webhook-ca --ignore-not-found ${dry_run_args[@]+"${dry_run_args[@]}"}

# 4. The namespace.
if [ "$ns_exists" = false ]; then
	say "namespace $namespace does not exist"
elif [ "$keep_namespace" = true ]; then
	say "namespace $namespace kept (--keep-namespace)"
elif [ "$ns_ours" = false ]; then
	say "namespace $namespace kept: install.sh did not create it (no label $owner_label=$owner_value)"
else
	kc delete namespace "$namespace" --ignore-not-found ${dry_run_args[@]+"${dry_run_args[@]}"}
fi

echo
if [ "$dry_run" = none ]; then
	say "done."
else
	say "dry run ($dry_run) done: nothing was changed."
fi
