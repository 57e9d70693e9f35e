package site.session_name_test

import data.site.session_name

_params := {"annotationPrefix": "eks.amazonaws.com", "sessionNameMaxLength": 64, "sessionPodNameEnv": "AWS_ROLE_SESSION_POD_NAME"}

_env(name, value) := {"name": name, "value": value}

_role := _env("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/r")

_token := _env("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token")

# A pod as the default bundle left it: "app" got the web-identity env.
_pod(metadata, containers) := {"object": {
	"apiVersion": "v1",
	"kind": "Pod",
	"metadata": metadata,
	"spec": {"serviceAccountName": "default", "containers": containers},
}}

_input(metadata, containers) := object.union(_pod(metadata, containers), {"params": _params})

_app := {"name": "app", "env": [_role, _token]}

test_static_name if {
	ms := session_name.mutations with input as _input({"name": "reports-0", "namespace": "a"}, [_app, {"name": "plain"}])
	ms == [{"op": "add-env", "container": "app", "env": [_env("AWS_ROLE_SESSION_NAME", "reports-0")]}]
}

test_generate_name_uses_downward_api if {
	ms := session_name.mutations with input as _input({"generateName": "web-7d9f-"}, [_app])
	ms == [{"op": "add-env", "container": "app", "env": [
		{"name": "AWS_ROLE_SESSION_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
		_env("AWS_ROLE_SESSION_NAME", "$(AWS_ROLE_SESSION_POD_NAME)"),
	]}]
}

# The downward-API entry is not added twice.
test_generate_name_existing_pod_name_env if {
	app := {"name": "app", "env": [_role, {"name": "AWS_ROLE_SESSION_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
	ms := session_name.mutations with input as _input({"generateName": "web-"}, [app])
	ms == [{"op": "add-env", "container": "app", "env": [_env("AWS_ROLE_SESSION_NAME", "$(AWS_ROLE_SESSION_POD_NAME)")]}]
}

test_sanitize_and_truncate if {
	session_name.sanitize("a b/c:d@e_f=g,h+i.j-k") == "a-b-c-d@e_f=g,h+i.j-k" with input as {"params": _params}
	long := concat("", [x | some _ in numbers.range(1, 70); x := "a"])
	count(session_name.sanitize(long)) == 64 with input as {"params": _params}
	count(session_name.sanitize(long)) == 10 with input as {"params": object.union(_params, {"sessionNameMaxLength": 10})}
}

test_long_pod_name_truncated if {
	name := concat("", [x | some _ in numbers.range(1, 70); x := "b"])
	ms := session_name.mutations with input as _input({"name": name}, [_app])
	ms[0].env[0].value == substring(name, 0, 64)
}

test_existing_session_name_kept if {
	app := {"name": "app", "env": [_role, _env("AWS_ROLE_SESSION_NAME", "mine")]}
	ms := session_name.mutations with input as _input({"name": "p1"}, [app])
	ms == []
	notes := session_name.notes with input as _input({"name": "p1"}, [app])
	"container \"app\" already has AWS_ROLE_SESSION_NAME: not changed" in notes
}

# Containers without AWS_ROLE_ARN (container credentials, skipped) get nothing.
test_only_web_identity_containers if {
	cc := {"name": "cc", "env": [_env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://x")]}
	inp := object.union(_input({"name": "p1", "annotations": {"eks.amazonaws.com/skip-containers": "skipped"}}, [cc, {"name": "skipped", "env": [_role]}, _app]), {})
	ms := session_name.mutations with input as inp
	ms == [{"op": "add-env", "container": "app", "env": [_env("AWS_ROLE_SESSION_NAME", "p1")]}]
}

test_init_containers_first if {
	inp := json.patch(_input({"name": "p1"}, [_app]), [{"op": "add", "path": "/object/spec/initContainers", "value": [{"name": "init", "env": [_role]}]}])
	ms := session_name.mutations with input as inp
	[m.container | some m in ms] == ["init", "app"]
}

test_one_character_name if {
	ms := session_name.mutations with input as _input({"name": "x"}, [_app])
	ms == []
}
