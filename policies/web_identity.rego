# Web identity (IRSA): AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, a projected token
# for the role's audience. Policy "web-identity" of the default bundle.
package pod_identity.web_identity

import data.pod_identity.identity
import data.pod_identity.inject

# An array, so the order is explicit: the volume, then per container env and mount.
# Undefined unless the pod's ServiceAccount is in web-identity mode.
mutations := inject.mutations if identity.settings.mode == "web-identity"

notes contains n if {
	identity.settings.mode == "web-identity"
	some n in inject.notes
}
