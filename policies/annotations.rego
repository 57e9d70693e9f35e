# Annotation keys, all under the configurable prefix (--annotation-prefix), and the
# pod's own annotations.
package pod_identity.annotations

import data.pod_identity.config

key(suffix) := concat("/", [config.annotation_prefix, suffix])

# ServiceAccount annotations.
role_arn := key("role-arn")

audience := key("audience")

sts_regional_endpoints := key("sts-regional-endpoints")

# ServiceAccount and pod annotation.
token_expiration := key("token-expiration")

# Pod annotation.
skip_containers := key("skip-containers")

# The pod's annotations ({} when it has none).
pod := a if {
	a := input.object.metadata.annotations
	is_object(a)
} else := {}
