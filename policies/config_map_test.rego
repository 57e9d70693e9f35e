package pod_identity.config_map_test

import data.pod_identity.config_map
import data.pod_identity.testutil as t

_in(entry, overrides) := t.make_input(t.simple_pod, null, {"configMap": entry}, overrides)

test_entry_and_exact if {
	e := t.cm_entry("ns/sa", false, t.role, "aud", true, 0)
	config_map.entry == e with input as _in(e, {})
	config_map.exact == e with input as _in(e, {})
	config_map.key == "ns/sa" with input as _in(e, {})
	w := t.cm_entry("*/sa", true, t.role, "aud", true, 0)
	config_map.entry == w with input as _in(w, {})
	not config_map.exact with input as _in(w, {})
	not config_map.entry with input as _in(null, {})
}

test_fields if {
	config_map.role_arn == t.role with input as _in(t.cm_entry("ns/sa", false, t.role, "", false, 0), {})
	not config_map.role_arn with input as _in(t.cm_entry("ns/sa", false, "", "", false, 0), {})
	config_map.audience == "" with input as _in({"key": "ns/sa", "roleARN": t.role}, {})
	config_map.regional_sts({"key": "ns/sa"}) == false
	config_map.regional_sts({"useRegionalSTS": true}) == true
}

test_token_expiration_decision if {
	config_map.token_expiration_decision({"key": "ns/sa", "tokenExpiration": 0}) == {"value": 3600, "from": "--token-expiration (ConfigMap entry ns/sa has none)"} with input as {"params": {"tokenExpiration": 3600}}
	config_map.token_expiration_decision({"key": "ns/sa"}).value == 600 with input as {"params": {"tokenExpiration": 1}}
	config_map.token_expiration_decision({"key": "ns/sa", "tokenExpiration": 100}) == {"value": 100, "from": "ConfigMap entry ns/sa"} with input as {"params": {}}
	config_map.token_expiration_decision({"key": "ns/sa", "tokenExpiration": -7}).value == -7 with input as {"params": {}}
}
