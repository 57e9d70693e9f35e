# The containers identity injection considers, the skip set, and the env key groups.
package pod_identity.containers

import data.pod_identity.annotations

_list(x) := x if is_array(x)

else := []

# Init containers first (native sidecars with restartPolicy: Always included, with no
# special treatment), then regular containers. Ephemeral containers are never changed.
init_containers := _list(object.get(input.object, ["spec", "initContainers"], []))

regular_containers := _list(object.get(input.object, ["spec", "containers"], []))

considered := array.concat(init_containers, regular_containers)

# The same from input.index, the engine's precomputed view of the pod: what admission
# uses, since building name sets in Rego is slow. {"list", "index", "name", "env" (set
# of env var names), "mounts" (set of volume mount names)}, init containers first.
index := input.index.containers

# The <prefix>/skip-containers pod annotation, read as upstream does: the first record
# of Go's encoding/csv (comma separator, quotes honoured, spaces NOT trimmed), each field
# the exact name of a container. "a, b" lists "a" and " b", so it does not skip "b".
# A value that is not valid CSV (a"b,c) skips nothing.
skip_annotation := v if {
	v := annotations.pod[annotations.skip_containers]
	is_string(v)
}

skip_listed := {name | some name in pod_identity.csv_record(skip_annotation)}

skip_annotation_invalid if {
	skip_annotation
	not _valid_csv(skip_annotation)
}

# (A nested call under `not` would be evaluated outside the negation: keep it in a function.)
_valid_csv(v) if is_array(pod_identity.csv_record(v))

# EXTENSION POINT: container names that get no identity (no env, no mount). Site
# bundles add to it with `skip contains name if { ... }` in their own module of this
# package. Skipping never stops the pod volume (or the label) from being added.
skip contains name if {
	# Read straight from the pod rather than through skip_listed: this rule runs on
	# every admission, and each rule in between costs microseconds.
	v := input.object.metadata.annotations[annotations.skip_containers]
	is_string(v)
	some name in pod_identity.csv_record(v)
}

# Env key groups. A group is "defined" in a container when any of its keys appears by
# name in env; values are ignored and envFrom is not looked at (as upstream).
web_identity_keys := {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}

container_credentials_keys := {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}

region_keys := {"AWS_REGION", "AWS_DEFAULT_REGION"}

sts_key := "AWS_STS_REGIONAL_ENDPOINTS"

env_names(c) := {n | some e in _list(object.get(c, "env", [])); n := e.name}

has_env(c, name) if name in env_names(c)

has_any(c, keys) if {
	some k in keys
	has_env(c, k)
}

mount_names(c) := {n | some m in _list(object.get(c, "volumeMounts", [])); n := m.name}

has_mount(c, name) if name in mount_names(c)

# The untouched-container rule: a container that already defines the mode's credential
# group AND the region group AND the STS key gets nothing, not even the mount, whether
# or not region/STS would have been injected.
untouched(c, credential_keys) if {
	has_any(c, credential_keys)
	has_any(c, region_keys)
	has_env(c, sts_key)
}

pod_volume_names := input.index.volumes

notes contains sprintf("pod annotation %s is not valid CSV: no container skipped", [annotations.skip_containers]) if {
	skip_annotation_invalid
}

notes contains msg if {
	some name in skip_listed
	not name in {c.name | some c in considered}
	msg := sprintf(
		"pod annotation %s lists %q, which is no container of this pod (names match exactly, spaces included)",
		[annotations.skip_containers, name],
	)
}
