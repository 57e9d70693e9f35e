# The per-pod algorithm shared by both modes: the projected token volume, then for each
# considered container that is neither skipped nor untouched, one add-env and the mount.
package pod_identity.inject

import data.pod_identity.annotations
import data.pod_identity.containers
import data.pod_identity.expiration
import data.pod_identity.identity
import data.pod_identity.windows

settings := identity.settings

credential_keys := {n | some n in settings.credentialEnvNames}

# The mode's credential pair, with the token file in the pod's OS form.
credential_env := [
	settings.credentialEnv[0],
	{"name": settings.credentialEnv[1].name, "value": windows.token_file},
]

skipped(c) if c.name in containers.skip

untouched(c) if containers.untouched(c, credential_keys)

# Containers that get env and/or the mount, init containers first.
targets := [ref.container | some ref in target_refs]

target_refs := [ref |
	some ref in containers.considered_refs
	not skipped(ref.container)
	not untouched(ref.container)
]

# Appended in this order: STS, region pair, credential pair, each only when no key of
# its group is present.
sts_env(c) := [{"name": containers.sts_key, "value": "regional"}] if {
	settings.regionalSts == true
	not containers.has_env(c, containers.sts_key)
} else := []

region_env(c) := [
	{"name": "AWS_DEFAULT_REGION", "value": settings.region},
	{"name": "AWS_REGION", "value": settings.region},
] if {
	settings.region != ""
	not containers.has_any(c, containers.region_keys)
} else := []

credentials_env(c) := credential_env if {
	not containers.has_any(c, credential_keys)
} else := []

env(c) := array.concat(array.concat(sts_env(c), region_env(c)), credentials_env(c))

volume_mount := {"name": settings.volumeName, "readOnly": true, "mountPath": settings.mountPath}

# Mutations name their container; those for init containers say so, because a name
# is looked up among regular containers first (upstream's fixture initPodNeedsRegion
# has an init container and a container of the same name, a pod the API server would
# refuse, and expects both injected).
_target(ref) := {"container": ref.container.name, "initContainer": true} if {
	ref.list == "initContainers"
} else := {"container": ref.container.name}

env_mutations(ref) := [object.union({"op": "add-env", "env": e}, _target(ref))] if {
	e := env(ref.container)
	count(e) > 0
} else := []

# The mount is checked by name only (its path is not compared).
mount_mutations(ref) := [] if {
	containers.has_mount(ref.container, settings.volumeName)
} else := [object.union({"op": "add-volume-mount", "volumeMount": volume_mount}, _target(ref))]

container_mutations(ref) := array.concat(env_mutations(ref), mount_mutations(ref))

# The pod volume is checked by name only (its source is not inspected).
volume_exists if settings.volumeName in containers.pod_volume_names

_audience := {"audience": settings.audience} if settings.audience != ""

else := {}

token_projection := object.union(
	{"expirationSeconds": expiration.token_expiration, "path": settings.tokenPath},
	_audience,
)

volume := {
	"name": settings.volumeName,
	"projected": {"sources": [{"serviceAccountToken": token_projection}]},
}

volume_mutations := [] if {
	volume_exists
} else := [{"op": "add-volume", "position": "first", "volume": volume}]

# Volume first, then per container (init containers first) its add-env and mount.
# Undefined when no identity applies.
mutations := array.concat(volume_mutations, [m |
	some ref in target_refs
	some m in container_mutations(ref)
]) if {
	settings
}

# Explanations, shared by both modes.

notes contains n if {
	settings
	some n in _notes
}

_notes contains n if some n in identity.notes

_notes contains n if some n in expiration.notes

_notes contains n if some n in windows.notes

_notes contains n if some n in containers.notes

_notes contains sprintf("volume %s exists: not added", [settings.volumeName]) if volume_exists

_notes contains sprintf("container %q skipped: listed in %s", [c.name, annotations.skip_containers]) if {
	some c in containers.considered
	c.name in containers.skip_listed
}

_notes contains sprintf("container %q skipped by a site rule (data.pod_identity.containers.skip)", [c.name]) if {
	some c in containers.considered
	skipped(c)
	not c.name in containers.skip_listed
}

_notes contains sprintf("container %q has credential, region and STS env: left untouched (no mount)", [c.name]) if {
	some c in containers.considered
	not skipped(c)
	untouched(c)
}

_notes contains msg if {
	some c in targets
	containers.has_any(c, credential_keys)
	msg := sprintf("container %q already has %s: credential env not added", [c.name, concat(" or ", settings.credentialEnvNames)])
}

_notes contains sprintf("container %q already has AWS_REGION or AWS_DEFAULT_REGION: region env not added", [c.name]) if {
	some c in targets
	settings.region != ""
	containers.has_any(c, containers.region_keys)
}

_notes contains sprintf("container %q already has AWS_STS_REGIONAL_ENDPOINTS: not added", [c.name]) if {
	some c in targets
	settings.regionalSts == true
	containers.has_env(c, containers.sts_key)
}

_notes contains msg if {
	some c in targets
	containers.has_mount(c, settings.volumeName)
	msg := sprintf("container %q already mounts a volume named %s: mount not added (its mountPath is not checked)", [c.name, settings.volumeName])
}
