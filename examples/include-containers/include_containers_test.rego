# Runs with the default bundle: opa test policies/ examples/include-containers/
package pod_identity.include_containers_test

import data.pod_identity.containers
import data.pod_identity.testutil as t
import data.pod_identity.web_identity

_pod(annotations) := t.pod(annotations, {
	"initContainers": [t.container("init")],
	"containers": [t.container("app"), t.container("worker"), t.container("istio-proxy")],
})

_input(annotations) := t.wi_input(_pod(annotations), t.fixture_sa(t.role), {})

_skip(annotations) := s if {
	s := containers.skip with input as _input(annotations)
}

test_only_listed_containers_injected if {
	_skip({"eks.amazonaws.com/include-containers": "app,worker"}) == {"init", "istio-proxy"}
	ms := t.per_container(web_identity.mutations) with input as _input({"eks.amazonaws.com/include-containers": "app, worker"})
	ms == [
		t.web_volume(86400),
		t.add_env("app", t.web_env(t.role)),
		t.add_env("worker", t.web_env(t.role)),
		t.web_mount("app"),
		t.web_mount("worker"),
	]
}

# Without the annotation the default behaviour is unchanged.
test_absent_changes_nothing if {
	_skip({}) == set()
	_skip({"eks.amazonaws.com/skip-containers": "istio-proxy"}) == {"istio-proxy"}
	ms := t.per_container(web_identity.mutations) with input as _input({})
	count(ms) == 9
}

# Both annotations: skip-containers still applies to included containers.
test_combined_with_skip if {
	_skip({"eks.amazonaws.com/include-containers": "app,worker", "eks.amazonaws.com/skip-containers": "worker"}) == {"init", "istio-proxy", "worker"}
}

# Unreadable or empty: nothing included (fail closed); the volume is still added.
test_invalid_or_empty_includes_nothing if {
	_skip({"eks.amazonaws.com/include-containers": `a"b,app`}) == {"init", "app", "worker", "istio-proxy"}
	_skip({"eks.amazonaws.com/include-containers": ""}) == {"init", "app", "worker", "istio-proxy"}
	ms := t.per_container(web_identity.mutations) with input as _input({"eks.amazonaws.com/include-containers": ""})
	ms == [t.web_volume(86400)]
	notes := web_identity.notes with input as _input({"eks.amazonaws.com/include-containers": `a"b,app`})
	"pod annotation eks.amazonaws.com/include-containers is not valid CSV: no container included" in notes
	"container \"app\" skipped: not listed in eks.amazonaws.com/include-containers" in notes
	"container \"app\" skipped by a site rule (data.pod_identity.containers.skip)" in notes
}

test_follows_prefix if {
	inp := t.wi_input(_pod({"example.com/include-containers": "init"}), t.sa({"example.com/role-arn": t.role}), {"annotationPrefix": "example.com"})
	s := containers.skip with input as inp
	s == {"app", "worker", "istio-proxy"}
}
