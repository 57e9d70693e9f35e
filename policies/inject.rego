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

env_mutations(c) := [{"op": "add-env", "container": c.name, "env": e}] if {
	e := env(c)
	count(e) > 0
} else := []

# The mount is checked by name only (its path is not compared).
mount_mutations(c) := [] if {
	containers.has_mount(c, settings.volumeName)
} else := [{"op": "add-volume-mount", "container": c.name, "volumeMount": volume_mount}]

container_mutations(c) := array.concat(env_mutations(c), mount_mutations(c))

# The same changes as one json-patch mutation on /spec/<list>/<index>, for containers
# the engine cannot find by name (containers.ambiguous).
indexed_mutations(ref) := [{"op": "json-patch", "patch": ops}] if {
	ops := array.concat(_indexed_ops(ref, "env", env(ref.container)), _indexed_ops(ref, "volumeMounts", _mounts(ref.container)))
	count(ops) > 0
} else := []

_mounts(c) := [] if containers.has_mount(c, settings.volumeName)

else := [volume_mount]

# Append items like the engine does: one add of the whole list when the field is
# absent (or null), else one add per item at the end.
_indexed_ops(ref, field, items) := [] if {
	count(items) == 0
} else := [{"op": "add", "path": sprintf("/spec/%s/%d/%s/-", [ref.list, ref.index, field]), "value": item} |
	some item in items
] if {
	is_array(ref.container[field])
} else := [{"op": "add", "path": sprintf("/spec/%s/%d/%s", [ref.list, ref.index, field]), "value": items}]

_ref_mutations(ref) := indexed_mutations(ref) if containers.ambiguous(ref)

else := container_mutations(ref.container)

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
	some m in _ref_mutations(ref)
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

_notes contains msg if {
	some ref in target_refs
	containers.ambiguous(ref)
	msg := sprintf("init container %q has the name of a container (the API server refuses such a pod): changed by index, /spec/initContainers/%d", [ref.container.name, ref.index])
}

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
