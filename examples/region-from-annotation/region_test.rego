package site.region_test

import data.site.region

_params := {"annotationPrefix": "eks.amazonaws.com", "awsDefaultRegion": "us-east-1"}

_env(name, value) := {"name": name, "value": value}

_role := _env("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/r")

_sa(annotations) := {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "team", "annotations": annotations}}

_ns(annotations) := {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "annotations": annotations}}

_input(sa, ns, containers, params) := {
	"object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"serviceAccountName": "app", "containers": containers}},
	"serviceAccount": sa,
	"namespaceObject": ns,
	"params": object.union(_params, params),
}

_set(container, env) := {"op": "set-env", "container": container, "env": env}

_both(r) := [_env("AWS_DEFAULT_REGION", r), _env("AWS_REGION", r)]

# The default bundle injected the flag's region: replaced in place.
test_sa_annotation_replaces_flag_region if {
	app := {"name": "app", "env": array.concat(_both("us-east-1"), [_role])}
	ms := region.mutations with input as _input(_sa({"eks.amazonaws.com/region": "eu-central-1"}), null, [app], {})
	ms == [_set("app", _both("eu-central-1"))]
}

# Flag empty: the default bundle injected no region: both keys added.
test_adds_when_absent if {
	app := {"name": "app", "env": [_role]}
	ms := region.mutations with input as _input(_sa({"eks.amazonaws.com/region": "eu-central-1"}), null, [app], {"awsDefaultRegion": ""})
	ms == [_set("app", _both("eu-central-1"))]
}

# The SA annotation beats the Namespace annotation; the Namespace is the fallback.
test_namespace_fallback_and_precedence if {
	app := {"name": "app", "env": [_role]}
	ms := region.mutations with input as _input(_sa({}), _ns({"eks.amazonaws.com/region": "ap-south-1"}), [app], {})
	ms == [_set("app", _both("ap-south-1"))]
	ms2 := region.mutations with input as _input(_sa({"eks.amazonaws.com/region": "eu-west-3"}), _ns({"eks.amazonaws.com/region": "ap-south-1"}), [app], {})
	ms2 == [_set("app", _both("eu-west-3"))]
	ms3 := region.mutations with input as _input(null, _ns({"eks.amazonaws.com/region": "ap-south-1"}), [app], {})
	ms3 == [_set("app", _both("ap-south-1"))]
	notes := region.notes with input as _input(null, _ns({"eks.amazonaws.com/region": "ap-south-1"}), [app], {})
	"region ap-south-1 from Namespace team annotation eks.amazonaws.com/region" in notes
}

# A container with its own region keeps it; containers without identity env and
# skipped containers are not touched; only the differing key is set.
test_own_region_and_non_identity_containers if {
	own := {"name": "own", "env": [_role, _env("AWS_REGION", "paris")]}
	plain := {"name": "plain"}
	half := {"name": "half", "env": [_env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://x"), _env("AWS_REGION", "us-east-1"), _env("AWS_DEFAULT_REGION", "eu-central-1")]}
	ms := region.mutations with input as _input(_sa({"eks.amazonaws.com/region": "eu-central-1"}), null, [own, plain, half], {})
	ms == [_set("half", [_env("AWS_REGION", "eu-central-1")])]
	notes := region.notes with input as _input(_sa({"eks.amazonaws.com/region": "eu-central-1"}), null, [own, plain, half], {})
	"container \"own\" sets its own region (AWS_REGION): not changed" in notes
}

test_value_from_is_own_region if {
	app := {"name": "app", "env": [_role, {"name": "AWS_REGION", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "r"}}}]}
	ms := region.mutations with input as _input(_sa({"eks.amazonaws.com/region": "eu-central-1"}), null, [app], {})
	ms == []
}

# Already right (a re-invocation): nothing.
test_already_set if {
	app := {"name": "app", "env": array.concat([_role], _both("eu-central-1"))}
	ms := region.mutations with input as _input(_sa({"eks.amazonaws.com/region": "eu-central-1"}), null, [app], {})
	ms == []
}

test_annotation_prefix if {
	app := {"name": "app", "env": [_role]}
	ms := region.mutations with input as _input(_sa({"example.com/region": "eu-north-1", "eks.amazonaws.com/region": "x"}), null, [app], {"annotationPrefix": "example.com"})
	ms == [_set("app", _both("eu-north-1"))]
}

test_no_annotation_no_region if {
	not region.region with input as _input(_sa({"eks.amazonaws.com/region": ""}), _ns({}), [], {})
}
