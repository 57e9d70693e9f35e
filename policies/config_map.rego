# The pod-identity-webhook ConfigMap entry for the pod's ServiceAccount
# (input.identities.configMap): the exact "<namespace>/<name>" key, else "*/<name>".
# Does not read input.object (see identity.rego).
package pod_identity.config_map

import data.pod_identity.config

entry := e if {
	e := input.identities.configMap
	is_object(e)
}

key := object.get(entry, "key", "")

# The entry, only when its key is exact: container-credentials mode never uses "*/<name>".
exact := entry if not entry.wildcard == true

role_arn := r if {
	r := entry.roleARN
	is_string(r)
	r != ""
}

# No flag fallback: an absent or empty audience leaves it out of the projection.
audience := a if {
	a := entry.audience
	is_string(a)
} else := ""

regional_sts(e) := object.get(e, "useRegionalSTS", false) == true

# {value, from} for the entry's expiry: 0 (absent) means the clamped --token-expiration;
# any other value is used as is, without the 600 s minimum (upstream: 100 stays 100).
token_expiration_decision(e) := {
	"value": config.token_expiration_default,
	"from": sprintf("--token-expiration (ConfigMap entry %s has none)", [object.get(e, "key", "")]),
} if {
	object.get(e, "tokenExpiration", 0) in {0, null}
} else := {
	"value": e.tokenExpiration,
	"from": sprintf("ConfigMap entry %s", [object.get(e, "key", "")]),
}
