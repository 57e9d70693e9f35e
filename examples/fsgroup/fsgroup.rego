# fsGroup for non-root pods that got an AWS token volume (upstream #8, PR #86).
#
# The kubelet writes a projected service-account token with mode 0600 owned by root
# unless the pod sets spec.securityContext.fsGroup; a non-root process then gets
# "permission denied" on the token file. Upstream's README tells users to set fsGroup
# themselves. This policy runs after the default bundle and, for pods that got the
# token volume, have no fsGroup, and run something as non-root, sets fsGroup to the
# pod's runAsGroup, else its runAsUser, else params.fsGroup (65534).
package site.fsgroup

import data.pod_identity.containers

token_volume_names := {
	object.get(input.params, "webIdentityTokenVolumeName", "aws-iam-token"),
	object.get(input.params, "containerCredentialsTokenVolumeName", "eks-pod-identity-token"),
}

# The first token volume: a pod may have both (one per identity mode), and a complete
# rule must have one value.
token_volumes := [v.name |
	some v in object.get(input.object, ["spec", "volumes"], [])
	v.name in token_volume_names
]

token_volume := token_volumes[0]

pod_security_context := sc if {
	sc := input.object.spec.securityContext
	is_object(sc)
} else := {}

has_fs_group if is_number(pod_security_context.fsGroup)

non_root(sc) if sc.runAsNonRoot == true

non_root(sc) if {
	is_number(sc.runAsUser)
	sc.runAsUser != 0
}

# Why the pod needs it: the pod, or the first non-root container (init containers
# included, in the order they run).
non_root_containers := [c.name |
	some c in containers.considered
	non_root(object.get(c, "securityContext", {}))
]

non_root_reason := "the pod's securityContext" if {
	non_root(pod_security_context)
} else := sprintf("container %q", [non_root_containers[0]]) if {
	count(non_root_containers) > 0
}

# {value, from}
fs_group := {"value": pod_security_context.runAsGroup, "from": "the pod's runAsGroup"} if {
	is_number(pod_security_context.runAsGroup)
} else := {"value": pod_security_context.runAsUser, "from": "the pod's runAsUser"} if {
	is_number(pod_security_context.runAsUser)
} else := {"value": object.get(input.params, "fsGroup", 65534), "from": "params.fsGroup"}

mutations := [{"op": "set-pod-security-context", "securityContext": {"fsGroup": fs_group.value}}] if {
	token_volume
	not has_fs_group
	non_root_reason
} else := []

notes contains sprintf("fsGroup %d from %s: volume %s, %s runs as non-root", [fs_group.value, fs_group.from, token_volume, non_root_reason]) if {
	count(mutations) > 0
}

notes contains "nothing runs as non-root (runAsNonRoot or a non-zero runAsUser): fsGroup not set" if {
	token_volume
	not has_fs_group
	not non_root_reason
}

notes contains sprintf("the pod already has fsGroup %v: not changed", [pod_security_context.fsGroup]) if has_fs_group
