# Mode selection and the ServiceAccount-derived identity settings.
#
# Nothing here (nor in service_account.rego, config_map.rego, sts.rego) reads
# input.object: settings depends only on input.serviceAccount, input.identities,
# input.params and input.request.namespace, so the engine can compute it once per
# ServiceAccount. Pod-level inputs (the token-expiration pod annotation, the jitter,
# Windows, the containers) are applied by expiration.rego, windows.rego and inject.rego.
package pod_identity.identity

import data.pod_identity.annotations
import data.pod_identity.config
import data.pod_identity.config_map
import data.pod_identity.expiration
import data.pod_identity.service_account
import data.pod_identity.sts

# Where the identity comes from, in upstream's order: the container-credentials
# identities file (exact pair), then a non-empty role-arn annotation on the
# ServiceAccount, then the ConfigMap entry (exact key first, then "*/<name>").
source := "identities-file" if {
	is_object(input.identities.containerCredentials)
} else := "service-account" if {
	service_account.role_arn
} else := "configmap" if {
	config_map.role_arn
}

mode := {
	"identities-file": "container-credentials",
	"service-account": "web-identity",
	"configmap": "web-identity",
}[source]

# The ServiceAccount's own values (annotations over flags) are used: web identity with
# its role, or container credentials with the ServiceAccount found. Otherwise its
# audience/sts/expiry annotations are ignored.
service_account_values_used if source == "service-account"

service_account_values_used if {
	source == "identities-file"
	service_account.found
}

# {value, from} for each setting.

role_decision := {
	"value": service_account.role_arn,
	"from": sprintf("ServiceAccount annotation %s", [annotations.role_arn]),
} if {
	source == "service-account"
	not service_account.role_arn_composed
}

role_decision := {
	"value": service_account.role_arn,
	"from": sprintf(
		"ServiceAccount annotation %s (%q composed with --aws-partition and --aws-account-id)",
		[annotations.role_arn, service_account.role_arn_raw],
	),
} if {
	source == "service-account"
	service_account.role_arn_composed
}

role_decision := {
	"value": config_map.role_arn,
	"from": sprintf("ConfigMap entry %s", [config_map.key]),
} if {
	source == "configmap"
}

audience_decision := {
	"value": config.container_credentials_audience,
	"from": "--container-credentials-audience",
} if {
	source == "identities-file"
}

audience_decision := d if {
	source == "service-account"
	d := _service_account_audience
}

audience_decision := {
	"value": config_map.audience,
	"from": sprintf("ConfigMap entry %s", [config_map.key]),
} if {
	source == "configmap"
}

_service_account_audience := {
	"value": v,
	"from": sprintf("ServiceAccount annotation %s", [annotations.audience]),
} if {
	v := service_account.audience
} else := {
	"value": config.token_audience,
	"from": "--token-audience",
}

# The expiry before the pod annotation and the jitter.
expiration_decision := service_account.token_expiration_decision if source == "service-account"

expiration_decision := config_map.token_expiration_decision(config_map.entry) if source == "configmap"

# Container credentials: the ServiceAccount's value when it is found (annotation >
# flag), else the exact ConfigMap entry, else 86400 (the flag is not used then).
expiration_decision := d if {
	source == "identities-file"
	d := _container_credentials_expiration
}

_container_credentials_expiration := service_account.token_expiration_decision if {
	service_account.found
} else := d if {
	d := config_map.token_expiration_decision(config_map.exact)
} else := {
	"value": config.container_credentials_default_token_expiration,
	"from": "the container-credentials default (ServiceAccount not found, no exact ConfigMap entry)",
}

# Volume, token file and mount.
_paths := {
	"volumeName": config.web_identity_token_volume_name,
	"tokenPath": config.web_identity_token_path,
	"mountPath": config.token_mount_path,
} if {
	mode == "web-identity"
}

_paths := {
	"volumeName": config.container_credentials_token_volume_name,
	"tokenPath": config.container_credentials_token_path,
	"mountPath": config.container_credentials_token_mount_path,
} if {
	mode == "container-credentials"
}

# Linux form, cleaned like Go's filepath.Join ("/var/run//x/" + "token" = "/var/run/x/token").
token_file := pod_identity.clean_join(_paths.mountPath, _paths.tokenPath)

# The credential env pair; the second entry is always the token file (windows.rego
# rewrites its value for Windows pods).
credential_env := [
	{"name": "AWS_ROLE_ARN", "value": role_decision.value},
	{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file},
] if {
	mode == "web-identity"
}

credential_env := [
	{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": config.container_credentials_full_uri},
	{"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": token_file},
] if {
	mode == "container-credentials"
}

_common := object.union(_paths, {
	"mode": mode,
	"source": source,
	"audience": audience_decision.value,
	"regionalSts": sts.decision.value,
	"region": config.aws_default_region,
	"baseTokenExpiration": expiration_decision.value,
	"tokenFile": token_file,
	"credentialEnvNames": [e.name | some e in credential_env],
	"credentialEnv": credential_env,
	# Precomputed for the per-pod rules (inject.rego), since settings is evaluated once
	# per ServiceAccount: the credential keys, the env groups for Linux and Windows
	# pods (and their union), the mount, and the token projection without its expiry.
	"credentialKeys": {e.name | some e in credential_env},
	"groups": {
		"linux": _groups(token_file),
		"windows": _groups(windows_path(token_file)),
	},
	# Every group's keys, and every group's vars in order: what a container with none
	# of the keys gets (the common case, decided with one set operation).
	"envKeys": {k | some g in _groups(token_file); some k in g.keys},
	"allEnv": {
		"linux": [v | some g in _groups(token_file); some v in g.vars],
		"windows": [v | some g in _groups(windows_path(token_file)); some v in g.vars],
	},
	"volumeMount": {"name": _paths.volumeName, "readOnly": true, "mountPath": _paths.mountPath},
	"tokenProjection": _token_projection,
})

# The env key groups, in the order their vars are appended: STS, the region pair, the
# mode's credential pair (with the token file in the pod's OS form). A group's vars are
# added to a container only when none of its keys is there (upstream's group rule).
_groups(file) := array.concat(array.concat(_sts_group, _region_group), [{
	"keys": {e.name | some e in credential_env},
	"vars": [credential_env[0], {"name": credential_env[1].name, "value": file}],
}])

_sts_group := [{"keys": {"AWS_STS_REGIONAL_ENDPOINTS"}, "vars": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]}] if {
	sts.decision.value == true
} else := []

_region_group := [{"keys": {"AWS_REGION", "AWS_DEFAULT_REGION"}, "vars": [
	{"name": "AWS_DEFAULT_REGION", "value": config.aws_default_region},
	{"name": "AWS_REGION", "value": config.aws_default_region},
]}] if {
	config.aws_default_region != ""
} else := []

# "C:" + the path with every "/" replaced by "\" (Windows pods, see windows.rego).
windows_path(p) := concat("", ["C:", replace(p, "/", `\`)])

# The serviceAccountToken projection but its expirationSeconds; "audience" is left out
# when empty (a ConfigMap entry without one).
_token_projection := {"path": _paths.tokenPath, "audience": audience_decision.value} if {
	audience_decision.value != ""
} else := {"path": _paths.tokenPath}

# The identity decided for the pod's ServiceAccount; undefined when no mode applies.
# Read-only for other bundles (docs/policies.md, "Extension points").
settings := object.union(_common, {"roleArn": role_decision.value}) if mode == "web-identity"

settings := _common if mode == "container-credentials"

# Explanations.

notes contains sprintf("role %s from %s", [role_decision.value, role_decision.from])

notes contains msg if {
	source == "identities-file"
	cc := input.identities.containerCredentials
	msg := sprintf(
		"container credentials: %s/%s is listed in the identities file",
		[object.get(cc, "namespace", ""), object.get(cc, "serviceAccount", "")],
	)
}

notes contains sprintf("ServiceAccount annotation %s ignored: container credentials take precedence", [annotations.role_arn]) if {
	source == "identities-file"
	service_account.role_arn_raw
}

notes contains sprintf("ConfigMap entry %s ignored: container-credentials mode only uses exact entries", [config_map.key]) if {
	source == "identities-file"
	not service_account.found
	config_map.entry.wildcard == true
}

notes contains sprintf("ConfigMap entry %s ignored: the ServiceAccount was found, its annotations and the flags apply", [config_map.key]) if {
	source == "identities-file"
	service_account.found
	config_map.exact
}

notes contains sprintf("ServiceAccount %s has no %s annotation: ConfigMap entry %s supplies all values", [service_account.key, annotations.role_arn, config_map.key]) if {
	source == "configmap"
	service_account.found
}

notes contains sprintf("ServiceAccount not found: ConfigMap entry %s supplies all values", [config_map.key]) if {
	source == "configmap"
	not service_account.found
}

notes contains sprintf("ServiceAccount annotation %s ignored: values come from ConfigMap entry %s", [k, config_map.key]) if {
	source == "configmap"
	some k in [annotations.audience, annotations.sts_regional_endpoints, annotations.token_expiration]
	service_account.metadata_annotations[k]
}

notes contains sprintf("audience %s from %s", [audience_decision.value, audience_decision.from]) if {
	audience_decision.value != ""
}

notes contains sprintf("%s has an empty audience: audience left out of the token projection", [audience_decision.from]) if {
	audience_decision.value == ""
}

notes contains sprintf("ServiceAccount annotation %s value %q is not an integer: ignored", [annotations.token_expiration, v]) if {
	service_account_values_used
	v := service_account.token_expiration_invalid
}

notes contains sprintf("region %s from --aws-default-region", [config.aws_default_region]) if {
	settings
	config.aws_default_region != ""
}

notes contains "no region injected: --aws-default-region is empty" if {
	settings
	config.aws_default_region == ""
}

notes contains n if {
	settings
	some n in sts.notes
}
