# The per-pod algorithm shared by both modes: the projected token volume, then for each
# considered container that is neither skipped nor untouched, one add-env and the mount.
package pod_identity.inject

import data.pod_identity.annotations
import data.pod_identity.containers
import data.pod_identity.expiration
import data.pod_identity.identity
import data.pod_identity.windows

settings := identity.settings

# This file's rules are evaluated for every pod that gets an identity, so they are
# few and lean: what depends only on the ServiceAccount and the flags (the env key
# groups, the mount, the token projection) comes precomputed in settings, and
# containers are read from input.index (their env and mount names as sets).

credential_keys := settings.credentialKeys

skipped(c) if c.name in containers.skip

# The env key groups for this pod's OS (Windows pods get the token file as C:\...).
groups := settings.groups.windows if windows.is_windows

else := settings.groups.linux

# The untouched-container rule on a container's env names: the credential group, the
# region group and the STS key all defined.
_untouched_names(names) if {
	count(credential_keys & names) > 0
	count(containers.region_keys & names) > 0
	containers.sts_key in names
}

untouched(c) if _untouched_names(containers.env_names(c))

# The containers (input.index entries) that get env and/or the mount, init containers
# first: neither skipped nor untouched.
target_facts := [f |
	some f in input.index.containers
	not f.name in containers.skip
	not _untouched_names(f.env)
]

target_names := {f.name | some f in target_facts}

# The full containers that get env and/or the mount (for notes: reads the pod).
targets := [c | some c in containers.considered; c.name in target_names]

# The vars a container with these env names gets, in order: each group whose keys
# are all absent.
_env_for(names) := [v |
	some g in groups
	count(g.keys & names) == 0
	some v in g.vars
]

env(c) := _env_for(containers.env_names(c))

volume_mount := settings.volumeMount

# A container's mutations (f is an input.index entry): one add-env when it lacks any
# group, and the mount unless a mount of that name exists (its path is not checked).
# Mutations say whether they are for an init container, because a name is looked up
# among regular containers first (upstream's fixture initPodNeedsRegion has an init
# container and a container of the same name, a pod the API server would refuse, and
# expects both injected). None for an untouched container. `mutations` uses it for the
# containers that are not plain (see below).
container_mutations(f) := [
	{"op": "add-env", "container": f.name, "initContainer": f.list == "initContainers", "env": all_env},
	{"op": "add-volume-mount", "container": f.name, "initContainer": f.list == "initContainers", "volumeMount": settings.volumeMount},
] if {
	count(settings.envKeys & f.env) == 0
	not settings.volumeName in f.mounts
} else := [] if {
	_untouched_names(f.env)
} else := array.concat(
	[m |
		e := [v | some g in groups; count(g.keys & f.env) == 0; some v in g.vars]
		count(e) > 0
		m := {"op": "add-env", "container": f.name, "initContainer": f.list == "initContainers", "env": e}
	],
	[m |
		not settings.volumeName in f.mounts
		m := {"op": "add-volume-mount", "container": f.name, "initContainer": f.list == "initContainers", "volumeMount": settings.volumeMount}
	],
)

# Every group's vars, in order, for this pod's OS.
all_env := settings.allEnv.windows if windows.is_windows

else := settings.allEnv.linux

# The pod volume is checked by name only (its source is not inspected).
volume_exists if settings.volumeName in input.index.volumes

volume := {
	"name": settings.volumeName,
	"projected": {"sources": [{"serviceAccountToken": object.union(
		settings.tokenProjection,
		{"expirationSeconds": expiration.token_expiration},
	)}]},
}

# volume_exists inlined (one rule less on every admission).
volume_mutations := [] if {
	settings.volumeName in input.index.volumes
} else := [{"op": "add-volume", "position": "first", "volume": volume}]

# The volume first, then the plain containers (below), then the others one by one
# with container_mutations, init containers first. Undefined when no identity applies
# (volume_mutations is: the volume needs settings).
mutations := array.concat(volume_mutations, array.concat(_plain_mutations, _other_mutations))

# This rule runs for every container of every pod that gets an identity, so the
# common case is decided in few steps. A plain container is one that is not skipped,
# has none of the env keys and no mount of the token volume: it gets every var and the
# mount. All plain containers get them through one add-env and one add-volume-mount
# naming them all ("containers"), init containers first. What the comprehension reads
# of settings is looked up once, not per container.
_plain_names := [f.name |
	keys := settings.envKeys
	vol := settings.volumeName
	skip := containers.skip
	some f in input.index.containers
	keys & f.env == set()
	not vol in f.mounts
	not f.name in skip
]

_is_plain(f) if {
	count(settings.envKeys & f.env) == 0
	not settings.volumeName in f.mounts
	not f.name in containers.skip
}

_plain_mutations := [
	{"op": "add-env", "containers": _plain_names, "env": all_env},
	{"op": "add-volume-mount", "containers": _plain_names, "volumeMount": settings.volumeMount},
] if {
	count(_plain_names) > 0

	# Names unique across both lists (as in any pod the API server accepts): the engine
	# finds each in whichever list it is.
	count({n | some n in _plain_names}) == count(_plain_names)
} else := [] if {
	count(_plain_names) == 0
} else := array.concat(_plain_list("initContainers", true), _plain_list("containers", false))

# An init container and a container of the same name (upstream's fixture
# initPodNeedsRegion): one mutation per list, each saying which list it is for.
_plain_list(list, init) := [
	{"op": "add-env", "containers": names, "initContainer": init, "env": all_env},
	{"op": "add-volume-mount", "containers": names, "initContainer": init, "volumeMount": settings.volumeMount},
] if {
	names := [f.name | some f in input.index.containers; f.list == list; _is_plain(f)]
	count(names) > 0
} else := []

# Usually every container is plain, and this is decided without visiting them again.
_other_mutations := [] if {
	count(_plain_names) == count(input.index.containers)
} else := [m |
	some f in input.index.containers
	not f.name in containers.skip
	not _is_plain(f)
	some m in container_mutations(f)
]

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
