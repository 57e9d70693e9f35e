# Shared test helpers: inputs shaped like the engine's input document, and the
# expected mutations of the default bundle. Loaded only by `opa test`.
package pod_identity.testutil

# The flag params at their defaults (docs/policies.md) merged with the manifest params.
params := {
	"annotationPrefix": "eks.amazonaws.com",
	"tokenAudience": "sts.amazonaws.com",
	"tokenMountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
	"tokenExpiration": 86400,
	"awsDefaultRegion": "",
	"stsRegionalEndpoint": false,
	"composeRoleArn": false,
	"awsPartition": "",
	"awsAccountID": "",
	"containerCredentialsAudience": "pods.eks.amazonaws.com",
	"containerCredentialsTokenMountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
	"containerCredentialsTokenVolumeName": "eks-pod-identity-token",
	"containerCredentialsTokenPath": "eks-pod-identity-token",
	"containerCredentialsFullURI": "http://169.254.170.23/v1/credentials",
	"webIdentityTokenVolumeName": "aws-iam-token",
	"webIdentityTokenPath": "token",
	"podIdentityLabel": "eks.amazonaws.com/pod-identity",
	"minTokenExpiration": 600,
	"containerCredentialsDefaultTokenExpiration": 86400,
	"containerCredentialsJitterMin": 79200,
}

# The container-credentials flags of the upstream fixtures (section 7.1).
cc_params := {
	"containerCredentialsFullURI": "con-creds-uri",
	"containerCredentialsAudience": "con-creds-aud",
	"containerCredentialsTokenMountPath": "/con-creds-mount-path",
	"containerCredentialsTokenVolumeName": "con-creds-volume-name",
	"containerCredentialsTokenPath": "con-creds-token-path",
}

role := "arn:aws:iam::111122223333:role/s3-reader"

cn_role := "arn:aws-cn:iam::111122223333:role/s3-reader"

token_file := "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"

# ServiceAccount default/default with the given annotations.
sa(annotations) := {
	"apiVersion": "v1",
	"kind": "ServiceAccount",
	"metadata": {"name": "default", "namespace": "default", "annotations": annotations},
}

# The upstream fixtures' ServiceAccount: a role and the default audience.
fixture_sa(role_arn) := sa({
	"eks.amazonaws.com/role-arn": role_arn,
	"eks.amazonaws.com/audience": "sts.amazonaws.com",
})

# A pod named balajilovesoreos in namespace default, ServiceAccount default.
pod(annotations, spec) := {
	"apiVersion": "v1",
	"kind": "Pod",
	"metadata": {"name": "balajilovesoreos", "namespace": "default", "annotations": annotations},
	"spec": object.union({"serviceAccountName": "default"}, spec),
}

container(name) := {"name": name, "image": "amazonlinux"}

container_env(name, env) := {"name": name, "image": "amazonlinux", "env": env}

simple_pod := pod({}, {"containers": [container("balajilovesoreos")]})

# An input document; identities and params are merged over the defaults.
make_input(pod_object, service_account, identities, param_overrides) := {
	"object": pod_object,
	"oldObject": null,
	"request": {
		"uid": "00000000-0000-0000-0000-000000000000",
		"kind": {"group": "", "version": "v1", "kind": "Pod"},
		"resource": {"group": "", "version": "v1", "resource": "pods"},
		"namespace": "default",
		"operation": "CREATE",
	},
	"serviceAccount": service_account,
	"namespaceObject": null,
	"params": object.union(params, param_overrides),
	"identities": object.union({"containerCredentials": null, "configMap": null}, identities),
	"index": index_of(pod_object),
}

# input.index as the engine builds it (engine/index.go): init containers first.
index_of(pod_object) := {
	"containers": array.concat(
		_index_entries(pod_object, "initContainers"),
		_index_entries(pod_object, "containers"),
	),
	"volumes": {v.name | some v in object.get(pod_object, ["spec", "volumes"], [])},
}

_index_entries(pod_object, list) := [{
	"list": list, "index": i, "name": c.name,
	"env": {e.name | some e in object.get(c, "env", [])},
	"mounts": {m.name | some m in object.get(c, "volumeMounts", [])},
} |
	some i, c in object.get(pod_object, ["spec", list], [])
]

# Web identity from the ServiceAccount.
wi_input(pod_object, service_account, param_overrides) := make_input(pod_object, service_account, {}, param_overrides)

# Container credentials for default/default with the fixture flags.
cc_identities := {"containerCredentials": {"namespace": "default", "serviceAccount": "default"}}

cc_input(pod_object, service_account, param_overrides) := make_input(
	pod_object, service_account, cc_identities,
	object.union(cc_params, param_overrides),
)

# A ConfigMap entry as the engine passes it.
cm_entry(key, wildcard, role_arn, audience, regional, expiration) := {
	"key": key,
	"wildcard": wildcard,
	"roleARN": role_arn,
	"audience": audience,
	"useRegionalSTS": regional,
	"tokenExpiration": expiration,
}

env(name, value) := {"name": name, "value": value}

region_env(r) := [env("AWS_DEFAULT_REGION", r), env("AWS_REGION", r)]

sts_env := env("AWS_STS_REGIONAL_ENDPOINTS", "regional")

web_env(role_arn) := [env("AWS_ROLE_ARN", role_arn), env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file)]

add_env(name, env_list) := {"op": "add-env", "container": name, "initContainer": false, "env": env_list}

# The same mutations for an init container.
init(mutation) := object.union(mutation, {"initContainer": true})

projected(name, audience, expiration, path) := {
	"name": name,
	"projected": {"sources": [{"serviceAccountToken": {"audience": audience, "expirationSeconds": expiration, "path": path}}]},
}

add_volume(volume) := {"op": "add-volume", "position": "first", "volume": volume}

web_volume(expiration) := add_volume(projected("aws-iam-token", "sts.amazonaws.com", expiration, "token"))

web_mount(name) := {
	"op": "add-volume-mount",
	"container": name,
	"initContainer": false,
	"volumeMount": {"name": "aws-iam-token", "readOnly": true, "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"},
}

cc_env := [
	env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "con-creds-uri"),
	env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/con-creds-mount-path/con-creds-token-path"),
]

cc_volume(expiration) := add_volume(projected("con-creds-volume-name", "con-creds-aud", expiration, "con-creds-token-path"))

cc_mount(name) := {
	"op": "add-volume-mount",
	"container": name,
	"initContainer": false,
	"volumeMount": {"name": "con-creds-volume-name", "readOnly": true, "mountPath": "/con-creds-mount-path"},
}

cc_label := {"op": "set-label", "key": "eks.amazonaws.com/pod-identity", "value": "enabled"}

# The jitter a container-credentials pod balajilovesoreos in default with SA default gets.
fixture_jitter := pod_identity.jitter("default/balajilovesoreos/default", 79200, 86400)

# The mutations with each one naming several containers ("containers") expanded into
# one per container ("container", and "initContainer" as the engine resolves the name:
# a regular container first), in order: what each container gets, whichever shape the
# policy chose. Reads input.index, so call it under the same `with input as`.
# inject.rego gives all plain containers one add-env and one add-volume-mount
# (inject_test.rego checks that shape itself).
per_container(mutations) := [x |
	some m in mutations
	some x in _per_container(m)
]

_per_container(m) := [object.union(object.remove(m, ["containers"]), {"container": n, "initContainer": _init(m, n)}) |
	some n in m.containers
] if {
	is_array(m.containers)
} else := [m]

_init(m, _) := m.initContainer

_init(m, n) := false if {
	not "initContainer" in object.keys(m)
	some f in input.index.containers
	f.list == "containers"
	f.name == n
} else if {
	not "initContainer" in object.keys(m)
}
