package pod_identity.identity_test

import data.pod_identity.identity
import data.pod_identity.testutil as t
import data.pod_identity.web_identity

# settings must not read input.object: it is computed from an input without one.
test_settings_without_object if {
	inp := object.remove(t.wi_input(t.simple_pod, t.fixture_sa(t.role), {"awsDefaultRegion": "eu-west-1"}), ["object"])
	s := identity.settings with input as inp
	s == {
		"mode": "web-identity",
		"source": "service-account",
		"roleArn": t.role,
		"audience": "sts.amazonaws.com",
		"regionalSts": false,
		"region": "eu-west-1",
		"baseTokenExpiration": 86400,
		"volumeName": "aws-iam-token",
		"tokenPath": "token",
		"mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
		"tokenFile": t.token_file,
		"credentialEnvNames": ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"],
		"credentialEnv": t.web_env(t.role),
		"credentialKeys": {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"},
		"groups": {
			"linux": [
				{"keys": {"AWS_REGION", "AWS_DEFAULT_REGION"}, "vars": t.region_env("eu-west-1")},
				{"keys": {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}, "vars": t.web_env(t.role)},
			],
			"windows": [
				{"keys": {"AWS_REGION", "AWS_DEFAULT_REGION"}, "vars": t.region_env("eu-west-1")},
				{"keys": {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}, "vars": [
					t.env("AWS_ROLE_ARN", t.role),
					t.env("AWS_WEB_IDENTITY_TOKEN_FILE", `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`),
				]},
			],
		},
		"envKeys": {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"},
		"allEnv": {
			"linux": array.concat(t.region_env("eu-west-1"), t.web_env(t.role)),
			"windows": array.concat(t.region_env("eu-west-1"), [
				t.env("AWS_ROLE_ARN", t.role),
				t.env("AWS_WEB_IDENTITY_TOKEN_FILE", `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`),
			]),
		},
		"volumeMount": {"name": "aws-iam-token", "readOnly": true, "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"},
		"tokenProjection": {"path": "token", "audience": "sts.amazonaws.com"},
	}
}

test_settings_container_credentials if {
	inp := object.remove(t.cc_input(t.simple_pod, null, {}), ["object"])
	s := identity.settings with input as inp
	s == {
		"mode": "container-credentials",
		"source": "identities-file",
		"audience": "con-creds-aud",
		"regionalSts": false,
		"region": "",
		"baseTokenExpiration": 86400,
		"volumeName": "con-creds-volume-name",
		"tokenPath": "con-creds-token-path",
		"mountPath": "/con-creds-mount-path",
		"tokenFile": "/con-creds-mount-path/con-creds-token-path",
		"credentialEnvNames": ["AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"],
		"credentialEnv": t.cc_env,
		"credentialKeys": {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"},
		"groups": {
			"linux": [{"keys": {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}, "vars": t.cc_env}],
			"windows": [{"keys": {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}, "vars": [
				t.cc_env[0],
				t.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", `C:\con-creds-mount-path\con-creds-token-path`),
			]}],
		},
		"envKeys": {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"},
		"allEnv": {
			"linux": t.cc_env,
			"windows": [
				t.cc_env[0],
				t.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", `C:\con-creds-mount-path\con-creds-token-path`),
			],
		},
		"volumeMount": {"name": "con-creds-volume-name", "readOnly": true, "mountPath": "/con-creds-mount-path"},
		"tokenProjection": {"path": "con-creds-token-path", "audience": "con-creds-aud"},
	}
}

# No mode: settings undefined (SA missing, SA without role, empty role, no CM entry).
test_no_mode_settings_undefined if {
	not identity.settings with input as t.wi_input(t.simple_pod, null, {})
	not identity.settings with input as t.wi_input(t.simple_pod, t.sa({}), {})
	not identity.settings with input as t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": ""}), {})
	not identity.settings with input as t.make_input(t.simple_pod, t.sa({}), {"configMap": t.cm_entry("default/default", false, "", "a", true, 0)}, {})
}

_cm_input(sa, entry, overrides) := t.make_input(t.simple_pod, sa, {"configMap": entry}, overrides)

_settings(inp) := s if {
	s := identity.settings with input as inp
}

# An SA with a non-empty role beats the ConfigMap entry.
test_sa_role_beats_configmap if {
	sa := t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/token-expiration": "3600"})
	s := _settings(_cm_input(sa, t.cm_entry("default/default", false, "arn:aws:iam::222233334444:role/cm", "cm-aud", true, 7200), {}))
	s.source == "service-account"
	s.roleArn == t.role
	s.audience == "sts.amazonaws.com"
	s.regionalSts == false
	s.baseTokenExpiration == 3600
}

# SA found without a role: the ConfigMap entry supplies everything; the SA's audience,
# STS and expiry annotations are ignored, and so are the audience/STS flags.
test_sa_without_role_configmap_supplies_all if {
	sa := t.sa({
		"eks.amazonaws.com/audience": "sa-aud",
		"eks.amazonaws.com/token-expiration": "3600",
		"eks.amazonaws.com/sts-regional-endpoints": "true",
	})
	inp := _cm_input(sa, t.cm_entry("default/default", false, "arn:aws:iam::222233334444:role/cm", "cm-aud", false, 7200), {"stsRegionalEndpoint": true})
	s := _settings(inp)
	s.source == "configmap"
	s.roleArn == "arn:aws:iam::222233334444:role/cm"
	s.audience == "cm-aud"
	s.regionalSts == false
	s.baseTokenExpiration == 7200
	notes := web_identity.notes with input as inp
	"role arn:aws:iam::222233334444:role/cm from ConfigMap entry default/default" in notes
	"ServiceAccount default/default has no eks.amazonaws.com/role-arn annotation: ConfigMap entry default/default supplies all values" in notes
	"ServiceAccount annotation eks.amazonaws.com/audience ignored: values come from ConfigMap entry default/default" in notes
}

# A wildcard entry serves web identity (the SA may be missing); its key shows in notes.
test_wildcard_configmap_entry_web_identity if {
	inp := _cm_input(null, t.cm_entry("*/default", true, "arn:aws:iam::222233334444:role/cm", "cm-aud", true, 0), {})
	s := _settings(inp)
	s.source == "configmap"
	s.regionalSts == true
	s.baseTokenExpiration == 86400
	notes := web_identity.notes with input as inp
	"role arn:aws:iam::222233334444:role/cm from ConfigMap entry */default" in notes
	"ServiceAccount not found: ConfigMap entry */default supplies all values" in notes
}

# A ConfigMap entry without audience: no flag fallback, audience left out of the volume.
test_configmap_empty_audience_omitted if {
	inp := _cm_input(null, t.cm_entry("default/default", false, t.role, "", false, 0), {})
	_settings(inp).audience == ""
	ms := t.per_container(web_identity.mutations) with input as inp
	ms[0] == {"op": "add-volume", "position": "first", "volume": {
		"name": "aws-iam-token",
		"projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 86400, "path": "token"}}]},
	}}
	notes := web_identity.notes with input as inp
	"ConfigMap entry default/default has an empty audience: audience left out of the token projection" in notes
}

# ConfigMap expiry: 0 means the clamped flag; other values are not clamped.
test_configmap_expiration_zero_means_clamped_flag if {
	_settings(_cm_input(null, t.cm_entry("default/default", false, t.role, "a", false, 0), {"tokenExpiration": 3600})).baseTokenExpiration == 3600
	_settings(_cm_input(null, t.cm_entry("default/default", false, t.role, "a", false, 0), {"tokenExpiration": 100})).baseTokenExpiration == 600
}

test_configmap_expiration_not_clamped if {
	_settings(_cm_input(null, t.cm_entry("default/default", false, t.role, "a", false, 100), {})).baseTokenExpiration == 100
	_settings(_cm_input(null, t.cm_entry("default/default", false, t.role, "a", false, 172800), {})).baseTokenExpiration == 172800
}

# --compose-role-arn: a bare name (or path/name) becomes a role ARN; ARNs are kept.
test_compose_role_arn if {
	flags := {"composeRoleArn": true, "awsPartition": "aws", "awsAccountID": "111122223333"}
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": "s3-reader"}), flags)).roleArn == t.role
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": "path/name"}), flags)).roleArn == "arn:aws:iam::111122223333:role/path/name"
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.cn_role}), flags)).roleArn == t.cn_role
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": "s3-reader"}), {})).roleArn == "s3-reader"
}

# ConfigMap roles are never composed (upstream composes when the SA enters its cache).
test_compose_role_arn_not_for_configmap if {
	flags := {"composeRoleArn": true, "awsPartition": "aws", "awsAccountID": "111122223333"}
	_settings(_cm_input(null, t.cm_entry("default/default", false, "s3-reader", "a", false, 0), flags)).roleArn == "s3-reader"
}

# --annotation-prefix: every SA and pod annotation moves; the label does not.
test_annotation_prefix if {
	flags := {"annotationPrefix": "example.com"}
	not _settings(t.wi_input(t.simple_pod, t.fixture_sa(t.role), flags))
	sa := t.sa({
		"example.com/role-arn": t.role,
		"example.com/audience": "custom",
		"example.com/token-expiration": "4000",
		"eks.amazonaws.com/sts-regional-endpoints": "true",
	})
	pod := t.pod({"example.com/token-expiration": "5000", "example.com/skip-containers": "balajilovesoreos"}, {"containers": [t.container("balajilovesoreos")]})
	s := _settings(t.wi_input(pod, sa, flags))
	s.audience == "custom"
	s.baseTokenExpiration == 4000
	s.regionalSts == false
	ms := t.per_container(web_identity.mutations) with input as t.wi_input(pod, sa, flags)
	ms == [t.add_volume(t.projected("aws-iam-token", "custom", 5000, "token"))]
}

# Invalid SA annotations are ignored (flags apply); valid ones below 600 become 600.
test_invalid_sa_annotations if {
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/token-expiration": "1h"}), {"tokenExpiration": 5000})).baseTokenExpiration == 5000
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/token-expiration": "-5"}), {})).baseTokenExpiration == 600
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/token-expiration": "172800"}), {})).baseTokenExpiration == 172800
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/sts-regional-endpoints": "yes"}), {"stsRegionalEndpoint": true})).regionalSts == true
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/sts-regional-endpoints": ""}), {"stsRegionalEndpoint": true})).regionalSts == true
	_settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/sts-regional-endpoints": "T"}), {})).regionalSts == true
	inp := t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/token-expiration": "1h", "eks.amazonaws.com/sts-regional-endpoints": "yes"}), {})
	notes := web_identity.notes with input as inp
	"ServiceAccount annotation eks.amazonaws.com/token-expiration value \"1h\" is not an integer: ignored" in notes
	"ServiceAccount annotation eks.amazonaws.com/sts-regional-endpoints value \"yes\" is not a boolean: ignored" in notes
}

# The flag is raised to the minimum; an empty SA audience annotation means no audience.
test_flag_clamped_and_empty_sa_audience if {
	s := _settings(t.wi_input(t.simple_pod, t.sa({"eks.amazonaws.com/role-arn": t.role, "eks.amazonaws.com/audience": ""}), {"tokenExpiration": 60}))
	s.baseTokenExpiration == 600
	s.audience == ""
}

# Without the manifest params (a rule of another bundle calling in), the upstream
# defaults apply.
test_settings_fallback_params if {
	base := object.remove(t.wi_input(t.simple_pod, t.fixture_sa(t.role), {}), ["params"])
	inp := object.union(base, {"params": {"tokenMountPath": "/m"}})
	not inp.params.webIdentityTokenVolumeName
	s := _settings(inp)
	s.volumeName == "aws-iam-token"
	s.tokenFile == "/m/token"
	s.audience == "sts.amazonaws.com"
}
