# AWS_ROLE_SESSION_NAME for web-identity containers (upstream #112).
#
# Runs after the default bundle, so it sees the AWS_ROLE_ARN the default bundle added.
# Pods made by controllers have only metadata.generateName at admission (the API server
# picks the name after the webhooks ran), so:
#   * metadata.name set: the name itself, sanitised to the characters STS accepts
#     ([A-Za-z0-9+=,.@_-]) and cut to 64;
#   * otherwise: AWS_ROLE_SESSION_POD_NAME from the downward API (metadata.name), then
#     AWS_ROLE_SESSION_NAME=$(AWS_ROLE_SESSION_POD_NAME). Kubernetes expands $(VAR) from
#     the entries before it; a generated name is at most 63 valid characters.
package site.session_name

import data.pod_identity.containers

max_length := object.get(input.params, "sessionNameMaxLength", 64)

pod_name_env := object.get(input.params, "sessionPodNameEnv", "AWS_ROLE_SESSION_POD_NAME")

# The characters STS allows in a role session name.
sanitize(name) := substring(regex.replace(name, `[^A-Za-z0-9+=,.@_-]`, "-"), 0, max_length)

pod_name := n if {
	n := input.object.metadata.name
	is_string(n)
	n != ""
}

# STS wants at least 2 characters; a 1-character pod name gets no session name (the SDK
# then makes one up, as without this bundle).
static_name := s if {
	s := sanitize(pod_name)
	count(s) >= 2
}

# Containers (init containers first) with AWS_ROLE_ARN and no AWS_ROLE_SESSION_NAME,
# minus those the default bundle skips (<prefix>/skip-containers and site rules).
targets := [c |
	some c in containers.considered
	containers.has_env(c, "AWS_ROLE_ARN")
	not containers.has_env(c, "AWS_ROLE_SESSION_NAME")
	not c.name in containers.skip
]

# The downward-API entry goes first (unless the container already has it), so that
# $(AWS_ROLE_SESSION_POD_NAME) can be expanded.
_downward(c) := [] if {
	containers.has_env(c, pod_name_env)
} else := [{"name": pod_name_env, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]

env(_) := [{"name": "AWS_ROLE_SESSION_NAME", "value": static_name}] if static_name

env(c) := array.concat(_downward(c), [{"name": "AWS_ROLE_SESSION_NAME", "value": sprintf("$(%s)", [pod_name_env])}]) if {
	not pod_name
}

mutations := [{"op": "add-env", "container": c.name, "env": env(c)} | some c in targets]

notes contains sprintf("container %q: AWS_ROLE_SESSION_NAME=%s (pod name)", [c.name, static_name]) if {
	some c in targets
	static_name
}

notes contains sprintf("container %q: AWS_ROLE_SESSION_NAME from the pod name via the downward API (%s): the pod has only generateName %q at admission", [c.name, pod_name_env, object.get(input.object, ["metadata", "generateName"], "")]) if {
	some c in targets
	not pod_name
}

notes contains sprintf("pod name %q is shorter than 2 characters: no session name", [pod_name]) if {
	pod_name
	not static_name
}

notes contains sprintf("container %q already has AWS_ROLE_SESSION_NAME: not changed", [c.name]) if {
	some c in containers.considered
	containers.has_env(c, "AWS_ROLE_ARN")
	containers.has_env(c, "AWS_ROLE_SESSION_NAME")
}
