#!/usr/bin/env bash
# Prints rendered deployment manifests on stdout, for `kubectl apply -f -`, a server-side
# dry run, or the end-to-end tests. Nothing is installed globally (Helm is built into a
# cache outside the clone on first use, see deploy/scripts/tools.sh); progress goes to stderr.
#
# Usage: deploy/render.sh [--image REF] [TARGET] [-- HELM_ARGS...]
#   TARGET  base              deploy/base (default)
#           site-bundle       deploy/examples/site-bundle (base + the session-name bundle)
#           watch-namespaces  deploy/base + deploy/components/watch-namespaces
#           helm              the Helm chart, release "pod-identity-webhook" in namespace
#                             "pod-identity-webhook"; HELM_ARGS go to `helm template`
#                             (e.g. --set certManager.enabled=false --set tls.caBundle=...)
#   --image REF  the webhook image, e.g. registry.example.com/pod-identity-webhook:v1.2.3
#
# Examples:
#   deploy/render.sh | kubectl apply --dry-run=server -f -
#   deploy/render.sh --image my.registry/piw:dev helm -- --set flags.mutation.aws-default-region=eu-west-1
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=deploy/scripts/tools.sh
. "$root/deploy/scripts/tools.sh"

image=""
target=base
helm_args=()
while [ $# -gt 0 ]; do
	case $1 in
	--image) image=${2:?--image needs a value}; shift 2 ;;
	--image=*) image=${1#--image=}; shift ;;
	--) shift; helm_args=("$@"); break ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	base | site-bundle | watch-namespaces | helm) target=$1; shift ;;
	*) echo "render.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case $target in
helm)
	helm=$(ensure_helm)
	set_image=()
	if [ -n "$image" ]; then
		set_image=(--set-string "image.repository=${image%:*}" --set-string "image.tag=${image##*:}")
		case $image in *@*) set_image=(--set-string "image.repository=${image%@*}" --set-string "image.digest=${image#*@}") ;; esac
		case ${image##*/} in *:* | *@*) ;; *) set_image=(--set-string "image.repository=$image") ;; esac
	fi
	exec "$helm" template pod-identity-webhook "$root/deploy/helm/pod-identity-webhook" \
		--namespace pod-identity-webhook "${set_image[@]}" "${helm_args[@]}"
	;;
base) dir=$root/deploy/base ;;
site-bundle) dir=$root/deploy/examples/site-bundle ;;
watch-namespaces)
	dir=$work/watch-namespaces
	mkdir -p "$dir"
	# kustomize refuses absolute paths: refer to the clone relatively.
	rel=$(realpath --relative-to="$dir" "$root")
	printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n' \
		"$rel/deploy/base" "$rel/deploy/components/watch-namespaces" >"$dir/kustomization.yaml"
	;;
esac
[ ${#helm_args[@]} -eq 0 ] || { echo "render.sh: arguments after -- are for the helm target" >&2; exit 2; }

if [ -n "$image" ]; then
	mkdir -p "$work/image"
	cat >"$work/image/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work/image" "$dir")
patches:
  - target: {group: apps, version: v1, kind: Deployment, name: pod-identity-webhook}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/image
        value: "$image"
EOF
	dir=$work/image
fi
kustomize_build "$dir"
