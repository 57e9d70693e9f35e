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

# Each considered container with the names of its env vars and mounts (input.index):
# every check below is a set operation on them. {"list", "index", "name", "env",
# "mounts"}.
facts := containers.index

# The env key groups, in the order their vars are appended: STS, the region pair, the
# mode's credential pair. A group's vars are added only when none of its keys is there.
groups := array.concat(array.concat(_sts_group, _region_group), [{"keys": credential_keys, "vars": credential_env}])

_sts_group := [{"keys": {containers.sts_key}, "vars": [{"name": containers.sts_key, "value": "regional"}]}] if {
	settings.regionalSts == true
} else := []

_region_group := [{"keys": containers.region_keys, "vars": [
	{"name": "AWS_DEFAULT_REGION", "value": settings.region},
	{"name": "AWS_REGION", "value": settings.region},
]}] if {
	settings.region != ""
} else := []

# The untouched-container rule on a container's env names: the credential group, the
# region group and the STS key all defined.
_untouched_names(names) if {
	count(credential_keys & names) > 0
	count(containers.region_keys & names) > 0
	containers.sts_key in names
}

untouched(c) if _untouched_names(containers.env_names(c))

# Containers that get env and/or the mount, init containers first.
target_facts := [f |
	some f in facts
	not f.name in containers.skip
	not _untouched_names(f.env)
]

target_names := {f.name | some f in target_facts}

# The full containers that get env and/or the mount (for notes: reads the pod).
targets := [c | some c in containers.considered; c.name in target_names]

# The vars a container with these env names gets, in order.
_env_for(names) := [v |
	some g in groups
	count(g.keys & names) == 0
	some v in g.vars
]

env(c) := _env_for(containers.env_names(c))

volume_mount := {"name": settings.volumeName, "readOnly": true, "mountPath": settings.mountPath}

# Mutations name their container; those for init containers say so, because a name
# is looked up among regular containers first (upstream's fixture initPodNeedsRegion
# has an init container and a container of the same name, a pod the API server would
# refuse, and expects both injected).
_target(f) := {"container": f.name, "initContainer": true} if {
	f.list == "initContainers"
} else := {"container": f.name}

_env_mutations(f) := [object.union({"op": "add-env", "env": e}, _target(f))] if {
	e := _env_for(f.env)
	count(e) > 0
} else := []

# The mount is checked by name only (its path is not compared).
_mount_mutations(f) := [] if {
	settings.volumeName in f.mounts
} else := [object.union({"op": "add-volume-mount", "volumeMount": volume_mount}, _target(f))]

# A container's mutations; f is one of facts.
container_mutations(f) := array.concat(_env_mutations(f), _mount_mutations(f))

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
	some f in target_facts
	some m in container_mutations(f)
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
