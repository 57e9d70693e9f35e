# Container credentials (EKS Pod Identity): the pod-identity label,
# AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
# Policy "container-credentials" of the default bundle; wins over web identity.
package pod_identity.container_credentials

import data.pod_identity.config
import data.pod_identity.identity
import data.pod_identity.inject

# The label key is a fixed param: it ignores --annotation-prefix.
label_set if input.object.metadata.labels[config.pod_identity_label] == "enabled"

label_mutations := [] if {
	label_set
} else := [{"op": "set-label", "key": config.pod_identity_label, "value": "enabled"}]

# An array, so the order is explicit: the label, the volume, then per container env
# and mount. Undefined unless the pod's ServiceAccount is in container-credentials mode.
mutations := array.concat(label_mutations, inject.mutations) if {
	identity.settings.mode == "container-credentials"
}

notes contains n if {
	identity.settings.mode == "container-credentials"
	some n in inject.notes
}

notes contains sprintf("label %s=enabled added", [config.pod_identity_label]) if {
	identity.settings.mode == "container-credentials"
	not label_set
}

notes contains sprintf("label %s=enabled already set: not changed", [config.pod_identity_label]) if {
	identity.settings.mode == "container-credentials"
	label_set
}
