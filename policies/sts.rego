# Whether to inject AWS_STS_REGIONAL_ENDPOINTS=regional, and why.
# Does not read input.object (see identity.rego).
package pod_identity.sts

import data.pod_identity.annotations
import data.pod_identity.config
import data.pod_identity.config_map
import data.pod_identity.identity
import data.pod_identity.service_account

# {value, from}, per identity source (upstream precedence table, section 2.3).
decision := service_account_decision if identity.source == "service-account"

# A ConfigMap role: the entry's UseRegionalSTS only, the flag is ignored.
decision := config_map_decision(config_map.entry) if identity.source == "configmap"

decision := container_credentials_decision if identity.source == "identities-file"

# The ServiceAccount's value as upstream caches it: a valid ParseBool annotation
# ("1", "t", "TRUE", "false", ...) beats --sts-regional-endpoint; "yes" or "" mean the flag.
service_account_decision := {
	"value": v,
	"from": sprintf("ServiceAccount annotation %s", [annotations.sts_regional_endpoints]),
} if {
	v := service_account.regional_sts
} else := {
	"value": config.sts_regional_endpoint,
	"from": "--sts-regional-endpoint",
}

config_map_decision(e) := {
	"value": config_map.regional_sts(e),
	"from": sprintf("ConfigMap entry %s", [object.get(e, "key", "")]),
}

# Container credentials: the ServiceAccount's value when it is found, else the exact
# (never the wildcard) ConfigMap entry, else false.
container_credentials_decision := d if {
	service_account.found
	d := service_account_decision
} else := d if {
	d := config_map_decision(config_map.exact)
} else := {
	"value": false,
	"from": "the default (ServiceAccount not found, no exact ConfigMap entry)",
}

notes contains sprintf("ServiceAccount annotation %s value %q is not a boolean: ignored", [annotations.sts_regional_endpoints, v]) if {
	identity.service_account_values_used
	v := service_account.regional_sts_invalid
}

notes contains sprintf("regional STS endpoints %s from %s", [_on_off[decision.value], decision.from])

_on_off := {true: "on", false: "off"}
