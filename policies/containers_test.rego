package pod_identity.containers_test

import data.pod_identity.containers
import data.pod_identity.testutil as t
import data.pod_identity.web_identity

_pod(skip) := t.pod({"eks.amazonaws.com/skip-containers": skip}, {
	"initContainers": [t.container("init")],
	"containers": [t.container("a"), t.container("b"), t.container("c"), t.container("a,b")],
})

_skip(skip) := s if {
	s := containers.skip with input as t.wi_input(_pod(skip), t.fixture_sa(t.role), {})
}

test_skip_plain_list if {
	_skip("a,b") == {"a", "b"}
	_skip("init") == {"init"}
}

# Spaces are not trimmed: "a, b" lists "a" and " b", so "b" is not skipped.
test_skip_spaces_not_trimmed if {
	_skip("a, b") == {"a", " b"}
	notes := web_identity.notes with input as t.wi_input(_pod("a, b"), t.fixture_sa(t.role), {})
	"pod annotation eks.amazonaws.com/skip-containers lists \" b\", which is no container of this pod (names match exactly, spaces included)" in notes
	"container \"a\" skipped: listed in eks.amazonaws.com/skip-containers" in notes
}

# A bare quote inside a field is a CSV error: nothing is skipped.
test_skip_invalid_csv_skips_nothing if {
	_skip(`a"b,c`) == set()
	notes := web_identity.notes with input as t.wi_input(_pod(`a"b,c`), t.fixture_sa(t.role), {})
	"pod annotation eks.amazonaws.com/skip-containers is not valid CSV: no container skipped" in notes
}

# Quotes are honoured; only the first record (line) is read; empty skips nothing.
test_skip_quotes_and_first_record if {
	_skip(`"a,b",c`) == {"a,b", "c"}
	_skip("a\nb") == {"a"}
	_skip("") == set()
}

test_skip_absent if {
	s := containers.skip with input as t.wi_input(t.simple_pod, t.fixture_sa(t.role), {})
	s == set()
}

# A skipped init container gets nothing; the others are injected, init first.
test_skip_applies_to_init_containers if {
	ms := t.per_container(web_identity.mutations) with input as t.wi_input(_pod("init,b,a,b"), t.fixture_sa(t.role), {})
	[m.container | some m in ms; m.op == "add-env"] == ["c", "a,b"]
}

# Considered: init containers (native sidecars included) then containers; never ephemeral.
test_considered_order if {
	pod := t.pod({}, {
		"containers": [t.container("main")],
		"initContainers": [t.container("init"), object.union(t.container("sidecar"), {"restartPolicy": "Always"})],
		"ephemeralContainers": [t.container("debug")],
	})
	names := [c.name | some c in containers.considered] with input as t.wi_input(pod, t.fixture_sa(t.role), {})
	names == ["init", "sidecar", "main"]
}

test_env_groups if {
	c := t.container_env("x", [t.env("AWS_DEFAULT_REGION", "r"), {"name": "AWS_ROLE_ARN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
	containers.has_any(c, containers.region_keys)
	containers.has_any(c, containers.web_identity_keys)
	not containers.has_any(c, containers.container_credentials_keys)
	not containers.has_env(c, containers.sts_key)
	not containers.untouched(c, containers.web_identity_keys)
	c2 := t.container_env("x", array.concat(c.env, [t.env("AWS_STS_REGIONAL_ENDPOINTS", "legacy")]))
	containers.untouched(c2, containers.web_identity_keys)
	not containers.untouched(c2, containers.container_credentials_keys)
}

# envFrom is not looked at (upstream #248).
test_env_from_ignored if {
	c := object.union(t.container("x"), {"envFrom": [{"configMapRef": {"name": "aws"}}]})
	not containers.has_any(c, containers.region_keys)
	containers.env_names(c) == set()
}

test_mounts_by_name if {
	c := object.union(t.container("x"), {"volumeMounts": [{"name": "aws-iam-token", "mountPath": "/elsewhere"}]})
	containers.has_mount(c, "aws-iam-token")
	not containers.has_mount(t.container("x"), "aws-iam-token")
}
