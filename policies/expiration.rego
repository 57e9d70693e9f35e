# The projected token's expirationSeconds.
#
# Order: a valid pod annotation (clamped to the minimum) overrides the identity's base
# expiry (data.pod_identity.identity.settings.baseTokenExpiration); then, in
# container-credentials mode only, a value of exactly 86400 is jittered into
# [79200, 86400].
package pod_identity.expiration

import data.pod_identity.annotations
import data.pod_identity.config
import data.pod_identity.identity

# Raises n to the minimum (600 s). There is no maximum: upstream never applies its
# MaxTokenExpiration constant, so 172800 passes through.
clamp(n) := max([n, config.min_token_expiration])

# An annotation value parsed as upstream does (base-10 int64, then clamp); undefined
# when it is not an integer ("1h", "3600s"), so the caller falls back. "-5" gives 600.
parse(value) := clamp(pod_identity.parse_int(value))

# "from" text for an annotation value, saying when it was raised to the minimum.
describe(what, raw) := sprintf("%s (%q raised to the %d s minimum)", [what, raw, config.min_token_expiration]) if {
	pod_identity.parse_int(raw) < config.min_token_expiration
} else := what

# The flag, already clamped at startup upstream.
flag_decision := {
	"value": config.token_expiration_default,
	"from": describe("--token-expiration", format_int(config.token_expiration_flag, 10)),
}

# Read from input.object directly (not annotations.pod): evaluated on every admission.
pod_annotation := v if {
	v := input.object.metadata.annotations[annotations.token_expiration]
	is_string(v)
}

pod_annotation_invalid := v if {
	v := pod_annotation
	not parse(v)
}

# The value before the jitter: a valid pod annotation, else the identity's base expiry.
# Kept apart from its explanation (decision) so that admission does not compute text.
base := v if {
	v := parse(pod_annotation)
} else := identity.settings.baseTokenExpiration

# {value, from} before the jitter, for the notes.
decision := {
	"value": base,
	"from": describe(sprintf("pod annotation %s", [annotations.token_expiration]), pod_annotation),
} if {
	parse(pod_annotation)
} else := {
	"value": base,
	"from": identity.expiration_decision.from,
}

# Upstream jitters with a random offset, only in container-credentials mode and only
# when the expiry is exactly 86400, wherever that came from (default, flag, SA
# annotation, ConfigMap or pod annotation).
jittered if {
	identity.settings.mode == "container-credentials"
	base == config.container_credentials_default_token_expiration
}

# Policies are pure functions of their input, so instead of a random source the jitter
# is a hash of "<namespace>/<pod name, or generateName when empty>/<serviceAccountName>".
# A re-invocation of the same pod agrees with the first pass. Replicas created from one
# template (same generateName) share the value, so their tokens rotate together; pods
# with different names or namespaces are spread over the range.
jitter_key := sprintf("%s/%s/%s", [_namespace, _pod_name, _service_account_name])

_namespace := ns if {
	ns := input.request.namespace
	is_string(ns)
	ns != ""
} else := object.get(input.object, ["metadata", "namespace"], "")

_pod_name := n if {
	n := input.object.metadata.name
	is_string(n)
	n != ""
} else := object.get(input.object, ["metadata", "generateName"], "")

_service_account_name := object.get(input.object, ["spec", "serviceAccountName"], "")

# The final expirationSeconds. Web identity is never jittered: decided first, so
# that the common case costs one rule (this runs on every admission).
token_expiration := base if {
	identity.settings.mode != "container-credentials"
} else := pod_identity.jitter(
	jitter_key,
	config.container_credentials_jitter_min,
	config.container_credentials_default_token_expiration,
) if {
	jittered
} else := base

notes contains sprintf("token expiration %d s from %s", [decision.value, decision.from])

notes contains sprintf("pod annotation %s value %q is not an integer: ignored", [annotations.token_expiration, pod_annotation_invalid])

notes contains msg if {
	jittered
	msg := sprintf(
		"token expiration %d s jittered to %d s (container-credentials mode; hash of %q, shared by replicas of one template)",
		[decision.value, token_expiration, jitter_key],
	)
}
