package pod_identity.sts_test

import data.pod_identity.sts
import data.pod_identity.testutil as t

_wi(annotation, flag) := v if {
	sa := t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/sts-regional-endpoints": annotation})
	v := sts.decision.value with input as t.wi_input(t.simple_pod, sa, {"stsRegionalEndpoint": flag})
}

_wi_absent(flag) := v if {
	v := sts.decision.value with input as t.wi_input(t.simple_pod, t.fixture_sa(t.role), {"stsRegionalEndpoint": flag})
}

# Upstream TestNonRegionalSTS: annotation (true/false/empty/absent) x flag (true/false).
test_sts_matrix if {
	_wi("true", false) == true
	_wi("true", true) == true
	_wi("false", true) == false
	_wi("false", false) == false
	_wi("", true) == true
	_wi("", false) == false
	_wi_absent(true) == true
	_wi_absent(false) == false
}

_cc(sa, cm) := d if {
	identities := object.union(t.cc_identities, {"configMap": cm})
	d := sts.decision with input as t.make_input(t.simple_pod, sa, identities, {"stsRegionalEndpoint": true})
}

# Container credentials: SA (annotation > flag) when found, else exact CM, else false.
test_sts_container_credentials if {
	_cc(t.sa({}), null) == {"value": true, "from": "--sts-regional-endpoint"}
	_cc(t.sa({"eks.amazonaws.com/sts-regional-endpoints": "0"}), t.cm_entry("default/default", false, "", "", true, 0)).value == false
	_cc(null, t.cm_entry("default/default", false, "", "", true, 0)) == {"value": true, "from": "ConfigMap entry default/default"}
	_cc(null, t.cm_entry("*/default", true, "", "", true, 0)).value == false
	_cc(null, null) == {"value": false, "from": "the default (ServiceAccount not found, no exact ConfigMap entry)"}
}
