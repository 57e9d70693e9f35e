# What the pod's ServiceAccount says, parsed as upstream's ServiceAccount cache does.
# Does not read input.object (see identity.rego).
package pod_identity.service_account

import data.pod_identity.annotations
import data.pod_identity.config
import data.pod_identity.expiration

# The ServiceAccount was found (upstream: it is in the informer cache).
found if is_object(input.serviceAccount)

key := sprintf("%s/%s", [input.serviceAccount.metadata.namespace, input.serviceAccount.metadata.name])

# The ServiceAccount's annotations ({} when not found or none).
metadata_annotations := a if {
	found
	a := input.serviceAccount.metadata.annotations
	is_object(a)
} else := {}

_annotation(k) := v if {
	v := metadata_annotations[k]
	is_string(v)
}

# The role-arn annotation as written; undefined when absent or empty ("no role").
role_arn_raw := v if {
	v := _annotation(annotations.role_arn)
	v != ""
}

# --compose-role-arn: a value without "arn:" is a role name (or path/name).
role_arn_composed if {
	config.compose_role_arn
	not contains(role_arn_raw, "arn:")
}

# The role ARN (upstream only warns about an ARN that looks invalid; it is still used).
role_arn := sprintf("arn:%s:iam::%s:role/%s", [config.aws_partition, config.aws_account_id, role_arn_raw]) if {
	role_arn_composed
} else := role_arn_raw

# The audience annotation, verbatim (an empty value means no audience in the projection).
audience := _annotation(annotations.audience)

# The sts-regional-endpoints annotation, when it is a valid Go ParseBool value.
regional_sts := pod_identity.parse_bool(_annotation(annotations.sts_regional_endpoints))

regional_sts_invalid := v if {
	v := _annotation(annotations.sts_regional_endpoints)
	not _is_bool(v)
}

_is_bool(v) if is_boolean(pod_identity.parse_bool(v))

# The token-expiration annotation, parsed and raised to the minimum.
token_expiration := expiration.parse(_annotation(annotations.token_expiration))

token_expiration_invalid := v if {
	v := _annotation(annotations.token_expiration)
	not expiration.parse(v)
}

# {value, from}: the ServiceAccount's expiry as upstream caches it (annotation > flag).
token_expiration_decision := {
	"value": v,
	"from": expiration.describe(sprintf("ServiceAccount annotation %s", [annotations.token_expiration]), _annotation(annotations.token_expiration)),
} if {
	v := token_expiration
} else := expiration.flag_decision
