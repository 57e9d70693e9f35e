package pod_identity.inject_test

import data.pod_identity.inject
import data.pod_identity.testutil as t

_in(pod, overrides) := t.wi_input(pod, t.fixture_sa(t.role), overrides)

_fact(list, c) := {
	"list": list, "index": 0, "name": c.name,
	"env": {e.name | some e in object.get(c, "env", [])}, "mounts": {m.name | some m in object.get(c, "volumeMounts", [])},
}

test_env_order_per_group if {
	c := t.container("c")
	e := inject.env(c) with input as _in(t.simple_pod, {"stsRegionalEndpoint": true, "awsDefaultRegion": "r"})
	[x.name | some x in e] == ["AWS_STS_REGIONAL_ENDPOINTS", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
	e2 := inject.env(t.container_env("c", [t.env("AWS_STS_REGIONAL_ENDPOINTS", "legacy")])) with input as _in(t.simple_pod, {"stsRegionalEndpoint": true, "awsDefaultRegion": "r"})
	[x.name | some x in e2] == ["AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
}

# No env to add: no add-env mutation, but the mount still.
test_empty_env_no_add_env if {
	c := t.container_env("c", [t.env("AWS_ROLE_ARN", "x")])
	ms := inject.container_mutations(_fact("containers", c)) with input as _in(t.simple_pod, {})
	ms == [t.web_mount("c")]
}

# Mutations for init containers say so.
test_init_container_mutations_marked if {
	c := t.container("i")
	ms := inject.container_mutations(_fact("initContainers", c)) with input as _in(t.simple_pod, {})
	ms == [t.init(t.add_env("i", t.web_env(t.role))), t.init(t.web_mount("i"))]
}

test_volume_audience_omitted_when_empty if {
	v := inject.volume with input as t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/audience": ""}), {})
	v == {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 86400, "path": "token"}}]}}
}

test_volume_exists_by_name_only if {
	pod := t.pod({}, {"containers": [t.container("c")], "volumes": [{"name": "aws-iam-token", "secret": {"secretName": "x"}}]})
	inject.volume_exists with input as _in(pod, {})
	ms := t.per_container(inject.mutations) with input as _in(pod, {})
	ms[0].op == "add-env"
}

test_no_settings_no_mutations if {
	not inject.mutations with input as t.wi_input(t.simple_pod, null, {})
	notes := inject.notes with input as t.wi_input(t.pod({"eks.amazonaws.com/skip-containers": "c"}, {"containers": [t.container("c")]}), null, {})
	notes == set()
}

# The plain containers share one add-env and one add-volume-mount, init containers
# first; a container with some of the keys, and a skipped one, are handled on their own.
test_plain_containers_batched if {
	pod := t.pod({"eks.amazonaws.com/skip-containers": "skipped"}, {
		"initContainers": [t.container("i1"), t.container("i2")],
		"containers": [
			t.container("a"),
			t.container_env("has-region", [t.env("AWS_REGION", "x")]),
			t.container("skipped"),
			t.container("b"),
		],
	})
	ms := inject.mutations with input as _in(pod, {"awsDefaultRegion": "r"})
	all := array.concat(t.region_env("r"), t.web_env(t.role))
	ms == [
		t.web_volume(86400),
		{"op": "add-env", "containers": ["i1", "i2", "a", "b"], "env": all},
		{"op": "add-volume-mount", "containers": ["i1", "i2", "a", "b"], "volumeMount": t.web_mount("x").volumeMount},
		t.add_env("has-region", t.web_env(t.role)),
		t.web_mount("has-region"),
	]
}

# An init container and a container of the same name (a pod the API server refuses,
# but an upstream fixture): one batch per list, each saying which list it is for.
test_plain_containers_batched_per_list_when_names_repeat if {
	pod := t.pod({}, {"initContainers": [t.container("x"), t.container("i")], "containers": [t.container("x")]})
	ms := inject.mutations with input as _in(pod, {})
	mount := t.web_mount("x").volumeMount
	ms == [
		t.web_volume(86400),
		{"op": "add-env", "containers": ["x", "i"], "initContainer": true, "env": t.web_env(t.role)},
		{"op": "add-volume-mount", "containers": ["x", "i"], "initContainer": true, "volumeMount": mount},
		{"op": "add-env", "containers": ["x"], "initContainer": false, "env": t.web_env(t.role)},
		{"op": "add-volume-mount", "containers": ["x"], "initContainer": false, "volumeMount": mount},
	]
}
