# Region per ServiceAccount or Namespace (upstream #238, #149).
#
# Upstream injects one region for the whole cluster (--aws-default-region). Here the
# ServiceAccount annotation <prefix>/region wins, then the same annotation on the
# pod's Namespace. Runs after the default bundle: in every container that has identity
# env (web identity or container credentials), AWS_DEFAULT_REGION and AWS_REGION are
# set to that region with set-env: added when absent, replaced in place when their value
# is the --aws-default-region flag's (that is, injected by the default bundle). A
# container that sets a region of its own (another value, or valueFrom) keeps both keys
# as they are, so it never ends up with two different regions.
package site.region

import data.pod_identity.annotations
import data.pod_identity.containers

key := annotations.key("region")

identity_keys := {
	"AWS_ROLE_ARN",
	"AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
}

region_keys := ["AWS_DEFAULT_REGION", "AWS_REGION"]

_annotation(obj) := v if {
	v := obj.metadata.annotations[key]
	is_string(v)
	v != ""
}

# {value, from}
decision := {"value": v, "from": sprintf("ServiceAccount annotation %s", [key])} if {
	v := _annotation(input.serviceAccount)
} else := {"value": v, "from": sprintf("Namespace %s annotation %s", [input.namespaceObject.metadata.name, key])} if {
	v := _annotation(input.namespaceObject)
}

region := decision.value

flag_region := object.get(input.params, "awsDefaultRegion", "")

_env_entries(c) := [e | some e in object.get(c, "env", []); is_object(e)]

# The region keys a container sets itself: a value other than the flag's (injected by
# the default bundle) or this region's (set by this policy on an earlier invocation),
# or a valueFrom.
own_region_keys(c) := {e.name |
	some e in _env_entries(c)
	e.name in region_keys
	not _ours(e)
}

_ours(e) if {
	not e.valueFrom
	object.get(e, "value", null) in {v | some v in [flag_region, region]; v != ""}
}

targets := [c |
	some c in containers.considered
	containers.has_any(c, identity_keys)
	not c.name in containers.skip
	count(own_region_keys(c)) == 0
]

# The keys to set: absent ones, and flag values that differ from the region.
_changes(c) := [{"name": k, "value": region} |
	some k in region_keys
	not _has_value(c, k, region)
]

_has_value(c, k, v) if {
	some e in _env_entries(c)
	e.name == k
	e.value == v
}

mutations := [{"op": "set-env", "container": c.name, "env": ch} |
	some c in targets
	ch := _changes(c)
	count(ch) > 0
]

notes contains sprintf("region %s from %s", [decision.value, decision.from])

notes contains sprintf("container %q sets its own region (%s): not changed", [c.name, concat(", ", sort(own_region_keys(c)))]) if {
	some c in containers.considered
	containers.has_any(c, identity_keys)
	count(own_region_keys(c)) > 0
}

notes contains sprintf("container %q: %s set to %s", [c.name, concat(" and ", [k | some ch in _changes(c); k := ch.name]), region]) if {
	some c in targets
	count(_changes(c)) > 0
}
