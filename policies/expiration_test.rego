package pod_identity.expiration_test

import data.pod_identity.expiration
import data.pod_identity.testutil as t

_wi(annotations, sa_annotations, overrides) := e if {
	pod := t.pod(annotations, {"containers": [t.container("c")]})
	sa := t.sa(object.union({"eks.amazonaws.com/role-arn": t.role}, sa_annotations))
	e := expiration.token_expiration with input as t.wi_input(pod, sa, overrides)
}

_cc(pod, sa_annotations, overrides) := e if {
	e := expiration.token_expiration with input as t.cc_input(pod, t.sa(sa_annotations), overrides)
}

test_parse_and_clamp if {
	expiration.parse("3600") == 3600
	expiration.parse("0") == 600
	expiration.parse("-5") == 600
	expiration.parse("+700") == 700
	expiration.parse("172800") == 172800
	not expiration.parse("1h")
	not expiration.parse("3600s")
	not expiration.parse(" 3600")
	not expiration.parse("")
}

# Pod annotation > SA annotation > flag; invalid pod values are ignored.
test_pod_annotation_precedence if {
	_wi({}, {}, {}) == 86400
	_wi({}, {"eks.amazonaws.com/token-expiration": "4000"}, {"tokenExpiration": 5000}) == 4000
	_wi({"eks.amazonaws.com/token-expiration": "3600"}, {"eks.amazonaws.com/token-expiration": "4000"}, {}) == 3600
	_wi({"eks.amazonaws.com/token-expiration": "1h"}, {"eks.amazonaws.com/token-expiration": "4000"}, {}) == 4000
	_wi({"eks.amazonaws.com/token-expiration": "-5"}, {}, {}) == 600
	_wi({"eks.amazonaws.com/token-expiration": "yes"}, {}, {"tokenExpiration": 7000}) == 7000
}

# Web identity never jitters, even at exactly 86400.
test_web_identity_no_jitter if {
	_wi({"eks.amazonaws.com/token-expiration": "86400"}, {}, {}) == 86400
}

# Container credentials: 86400 (whatever its source) is jittered into [79200, 86400],
# deterministically from namespace/pod/serviceAccount.
test_cc_jitter_range_and_key if {
	e := _cc(t.simple_pod, {}, {})
	e >= 79200
	e <= 86400
	e == pod_identity.jitter("default/balajilovesoreos/default", 79200, 86400)
	e == _cc(t.simple_pod, {}, {})
}

test_cc_jitter_any_source_of_86400 if {
	pod := t.pod({"eks.amazonaws.com/token-expiration": "86400"}, {"containers": [t.container("c")]})
	_cc(pod, {"eks.amazonaws.com/token-expiration": "4000"}, {}) == t.fixture_jitter
	_cc(t.simple_pod, {"eks.amazonaws.com/token-expiration": "86400"}, {"tokenExpiration": 3600}) == t.fixture_jitter
	_cc(t.simple_pod, {}, {"tokenExpiration": 86400}) == t.fixture_jitter
}

# Only exactly 86400 is jittered.
test_cc_jitter_only_at_86400 if {
	_cc(t.simple_pod, {"eks.amazonaws.com/token-expiration": "86399"}, {}) == 86399
	_cc(t.simple_pod, {}, {"tokenExpiration": 3600}) == 3600
	pod := t.pod({"eks.amazonaws.com/token-expiration": "86401"}, {"containers": [t.container("c")]})
	_cc(pod, {}, {}) == 86401
}

# Pods from a controller have no name at admission: generateName is used.
test_cc_jitter_key_generate_name if {
	pod := {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-7d9f-"}, "spec": {"serviceAccountName": "default", "containers": [t.container("c")]}}
	key := expiration.jitter_key with input as t.cc_input(pod, t.sa({}), {})
	key == "default/web-7d9f-/default"
	_cc(pod, {}, {}) == pod_identity.jitter("default/web-7d9f-/default", 79200, 86400)
}

test_cc_jitter_key_namespace_from_request if {
	inp := json.patch(t.cc_input(t.simple_pod, null, {}), [{"op": "replace", "path": "/request/namespace", "value": "team-a"}])
	key := expiration.jitter_key with input as inp
	key == "team-a/balajilovesoreos/default"
}

test_notes if {
	pod := t.pod({"eks.amazonaws.com/token-expiration": "0"}, {"containers": [t.container("c")]})
	notes := expiration.notes with input as t.wi_input(pod, t.fixture_sa(t.role), {})
	notes == {"token expiration 600 s from pod annotation eks.amazonaws.com/token-expiration (\"0\" raised to the 600 s minimum)"}
	pod2 := t.pod({"eks.amazonaws.com/token-expiration": "1h"}, {"containers": [t.container("c")]})
	notes2 := expiration.notes with input as t.wi_input(pod2, t.fixture_sa(t.role), {"tokenExpiration": 100})
	notes2 == {
		"pod annotation eks.amazonaws.com/token-expiration value \"1h\" is not an integer: ignored",
		"token expiration 600 s from --token-expiration (\"100\" raised to the 600 s minimum)",
	}
}
