package site.fsgroup_test

import data.site.fsgroup

_params := {"annotationPrefix": "eks.amazonaws.com", "containerCredentialsTokenVolumeName": "eks-pod-identity-token", "webIdentityTokenVolumeName": "aws-iam-token", "fsGroup": 65534}

_input(spec) := {
	"object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": object.union({"containers": [{"name": "app"}]}, spec)},
	"params": _params,
}

_volume(name) := {"name": name, "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 86400}}]}}

_set(n) := [{"op": "set-pod-security-context", "securityContext": {"fsGroup": n}}]

_mutations(spec) := ms if {
	ms := fsgroup.mutations with input as _input(spec)
}

test_run_as_group_first if {
	_mutations({"volumes": [_volume("aws-iam-token")], "securityContext": {"runAsUser": 1000, "runAsGroup": 3000}}) == _set(3000)
}

test_run_as_user_second if {
	_mutations({"volumes": [_volume("aws-iam-token")], "securityContext": {"runAsUser": 1000}}) == _set(1000)
}

# runAsNonRoot without ids: the param.
test_param_default if {
	_mutations({"volumes": [_volume("aws-iam-token")], "securityContext": {"runAsNonRoot": true}}) == _set(65534)
}

# A non-root container (init container included) is enough; ids still come from the pod.
test_container_non_root if {
	spec := {"volumes": [_volume("eks-pod-identity-token")], "containers": [{"name": "app"}], "initContainers": [{"name": "init", "securityContext": {"runAsUser": 1001}}]}
	_mutations(spec) == _set(65534)
	notes := fsgroup.notes with input as _input(spec)
	notes == {"fsGroup 65534 from params.fsGroup: volume eks-pod-identity-token, container \"init\" runs as non-root"}
}

# Several non-root containers, and both token volumes: one fsGroup, the note names the
# first of each (a complete rule with two values would fail the policy).
test_several_non_root_containers_and_volumes if {
	spec := {
		"volumes": [_volume("eks-pod-identity-token"), _volume("aws-iam-token")],
		"containers": [{"name": "a", "securityContext": {"runAsUser": 1001}}, {"name": "b", "securityContext": {"runAsNonRoot": true}}],
		"initContainers": [{"name": "init", "securityContext": {"runAsUser": 1002}}],
	}
	_mutations(spec) == _set(65534)
	notes := fsgroup.notes with input as _input(spec)
	notes == {"fsGroup 65534 from params.fsGroup: volume eks-pod-identity-token, container \"init\" runs as non-root"}
}

test_not_needed if {
	# no token volume
	_mutations({"volumes": [_volume("other")], "securityContext": {"runAsNonRoot": true}}) == []
	_mutations({"securityContext": {"runAsNonRoot": true}}) == []

	# fsGroup already set (0 counts)
	_mutations({"volumes": [_volume("aws-iam-token")], "securityContext": {"runAsNonRoot": true, "fsGroup": 0}}) == []

	# root everywhere
	_mutations({"volumes": [_volume("aws-iam-token")], "securityContext": {"runAsUser": 0}, "containers": [{"name": "app", "securityContext": {"runAsNonRoot": false}}]}) == []
	_mutations({"volumes": [_volume("aws-iam-token")]}) == []
}

test_notes_when_not_needed if {
	notes := fsgroup.notes with input as _input({"volumes": [_volume("aws-iam-token")]})
	notes == {"nothing runs as non-root (runAsNonRoot or a non-zero runAsUser): fsGroup not set"}
}

# The container-credentials volume name follows the flag param.
test_cc_volume_name_from_flag if {
	inp := json.patch(_input({"volumes": [_volume("custom-cc")], "securityContext": {"runAsNonRoot": true}}), [{"op": "replace", "path": "/params/containerCredentialsTokenVolumeName", "value": "custom-cc"}])
	ms := fsgroup.mutations with input as inp
	ms == _set(65534)
}
