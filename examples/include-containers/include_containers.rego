# An include list of containers (upstream #147, #77), through the default bundle's
# extension point data.pod_identity.containers.skip.
#
# With the pod annotation <prefix>/include-containers: "app,worker", every considered
# container (init containers included) that is not listed is skipped: no env, no mount.
# Without the annotation nothing changes. The list is CSV like skip-containers, but
# each name is trimmed ("app, worker" works). The pod volume is still added, as with
# skip-containers. A value that is not valid CSV, or lists no name, includes nothing:
# the annotation asks for fewer identities, so when it cannot be read it fails closed.
package pod_identity.containers

import data.pod_identity.annotations

include_containers_key := annotations.key("include-containers")

include_containers_annotation := v if {
	v := annotations.pod[include_containers_key]
	is_string(v)
}

include_containers_listed := {n |
	some field in pod_identity.csv_record(include_containers_annotation)
	n := trim_space(field)
	n != ""
}

skip contains c.name if {
	include_containers_annotation
	some c in considered
	not c.name in include_containers_listed
}

notes contains sprintf("container %q skipped: not listed in %s", [c.name, include_containers_key]) if {
	include_containers_annotation
	some c in considered
	not c.name in include_containers_listed
}

notes contains sprintf("pod annotation %s is not valid CSV: no container included", [include_containers_key]) if {
	include_containers_annotation
	not _include_valid_csv(include_containers_annotation)
}

_include_valid_csv(v) if is_array(pod_identity.csv_record(v))

notes contains msg if {
	some name in include_containers_listed
	not name in {c.name | some c in considered}
	msg := sprintf("pod annotation %s lists %q, which is no container of this pod", [include_containers_key, name])
}
