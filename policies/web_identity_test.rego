# The 18 upstream golden fixtures (web identity), translated: each test builds the
# fixture's pod, ServiceAccount and flags and asserts the exact mutations, in order
# (per container: t.per_container expands the batched ones).
# Fixture flags: handler/region -> awsDefaultRegion, handler/injectSTS ->
# stsRegionalEndpoint, handler/expiration -> tokenExpiration.
package pod_identity.web_identity_test

import data.pod_identity.testutil as t
import data.pod_identity.web_identity

name := "balajilovesoreos"

_mutations(pod, sa, overrides) := m if {
	m := t.per_container(web_identity.mutations) with input as t.wi_input(pod, sa, overrides)
}

# 1. betaWindowsPodWithoutVolumes
test_fixture_beta_windows_pod_without_volumes if {
	pod := t.pod({}, {
		"containers": [t.container(name)],
		"nodeSelector": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "windows"},
	})
	_mutations(pod, t.fixture_sa(t.role), {}) == [
		t.web_volume(86400),
		t.add_env(name, [
			t.env("AWS_ROLE_ARN", t.role),
			t.env("AWS_WEB_IDENTITY_TOKEN_FILE", `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`),
		]),
		t.web_mount(name),
	]
}

# 2. windowsPodWithoutVolumes
test_fixture_windows_pod_without_volumes if {
	pod := t.pod({}, {
		"containers": [t.container(name)],
		"nodeSelector": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "windows"},
	})
	_mutations(pod, t.fixture_sa(t.role), {}) == [
		t.web_volume(86400),
		t.add_env(name, [
			t.env("AWS_ROLE_ARN", t.role),
			t.env("AWS_WEB_IDENTITY_TOKEN_FILE", `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`),
		]),
		t.web_mount(name),
	]
}

# 3. initPodNeedsRegion: the init container and the container share a name in the
# fixture (the API server would refuse such a pod); both are injected, init first. The
# init container's mutations say initContainer: true, so the engine finds the right one.
test_fixture_init_pod_needs_region if {
	pod := t.pod({}, {"initContainers": [t.container(name)], "containers": [t.container(name)]})
	env := array.concat(t.region_env("seattle"), t.web_env(t.role))
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "seattle"}) == [
		t.web_volume(86400),
		t.init(t.add_env(name, env)),
		t.init(t.web_mount(name)),
		t.add_env(name, env),
		t.web_mount(name),
	]
}

# 4. rawPodHasAll: credential, region and STS keys present: container left untouched
# (no env, no mount); the volume is still added.
test_fixture_raw_pod_has_all if {
	pod := t.pod({}, {"containers": [t.container_env(name, [
		t.env("AWS_REGION", "cn-northwest-1"),
		t.env("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
		t.env("AWS_ROLE_ARN", t.cn_role),
	])]})
	flags := {"stsRegionalEndpoint": true, "awsDefaultRegion": "cn-north-1", "tokenExpiration": 3600}
	_mutations(pod, t.fixture_sa(t.cn_role), flags) == [t.web_volume(3600)]
}

_has_sts_pod(annotations) := t.pod(annotations, {"containers": [t.container_env(name, [
	t.env("AWS_REGION", "cn-northwest-1"),
	t.env("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
])]})

_sts_flags := {"stsRegionalEndpoint": true, "awsDefaultRegion": "cn-north-1"}

# 5. rawPodHasSTS: region and STS present, so only the credential pair and the mount.
test_fixture_raw_pod_has_sts if {
	_mutations(_has_sts_pod({}), t.fixture_sa(t.cn_role), _sts_flags) == [
		t.web_volume(86400),
		t.add_env(name, t.web_env(t.cn_role)),
		t.web_mount(name),
	]
}

# 6. rawPodHasTokenExpiration: the pod annotation overrides the default.
test_fixture_raw_pod_has_token_expiration if {
	pod := _has_sts_pod({"eks.amazonaws.com/token-expiration": "3600"})
	_mutations(pod, t.fixture_sa(t.cn_role), _sts_flags) == [
		t.web_volume(3600),
		t.add_env(name, t.web_env(t.cn_role)),
		t.web_mount(name),
	]
}

# 7. rawPodHasVolumeMount: volume and mount of that name exist (a hostPath, trusted by
# name): only the env.
test_fixture_raw_pod_has_volume_mount if {
	pod := t.pod({}, {
		"containers": [object.union(t.container(name), {"volumeMounts": [{"name": "aws-iam-token", "mountPath": ""}]})],
		"volumes": [{"name": "aws-iam-token", "hostPath": {"path": "/path/to/token"}}],
	})
	_mutations(pod, t.fixture_sa(t.role), {}) == [t.add_env(name, t.web_env(t.role))]
}

# 8. rawPodMinTokenExpiration: pod annotation "0" is raised to 600.
test_fixture_raw_pod_min_token_expiration if {
	pod := _has_sts_pod({"eks.amazonaws.com/token-expiration": "0"})
	_mutations(pod, t.fixture_sa(t.cn_role), _sts_flags) == [
		t.web_volume(600),
		t.add_env(name, t.web_env(t.cn_role)),
		t.web_mount(name),
	]
}

# 9. rawPodNeedsRegion
test_fixture_raw_pod_needs_region if {
	_mutations(t.simple_pod, t.fixture_sa(t.role), {"awsDefaultRegion": "seattle"}) == [
		t.web_volume(86400),
		t.add_env(name, array.concat(t.region_env("seattle"), t.web_env(t.role))),
		t.web_mount(name),
	]
}

# 10. rawPodNeedsSTS: order STS, AWS_DEFAULT_REGION, AWS_REGION, role, token file.
test_fixture_raw_pod_needs_sts if {
	_mutations(t.simple_pod, t.fixture_sa(t.cn_role), _sts_flags) == [
		t.web_volume(86400),
		t.add_env(name, array.concat(array.concat([t.sts_env], t.region_env("cn-north-1")), t.web_env(t.cn_role))),
		t.web_mount(name),
	]
}

# 11. rawPodNoSTSAnnotationOverride: SA "false" beats the flag.
test_fixture_raw_pod_no_sts_annotation_override if {
	sa := t.sa({
		"eks.amazonaws.com/role-arn": t.role,
		"eks.amazonaws.com/audience": "sts.amazonaws.com",
		"eks.amazonaws.com/sts-regional-endpoints": "false",
	})
	_mutations(t.simple_pod, sa, {"stsRegionalEndpoint": true, "awsDefaultRegion": "us-east-1"}) == [
		t.web_volume(86400),
		t.add_env(name, array.concat(t.region_env("us-east-1"), t.web_env(t.role))),
		t.web_mount(name),
	]
}

# 12. rawPodRegionPresent
test_fixture_raw_pod_region_present if {
	pod := t.pod({}, {"containers": [t.container_env(name, [t.env("AWS_REGION", "paris")])]})
	_mutations(pod, t.fixture_sa(t.role), {}) == [
		t.web_volume(86400),
		t.add_env(name, t.web_env(t.role)),
		t.web_mount(name),
	]
}

# 13. rawPodSkip: sidecar skipped; the main container has AWS_ROLE_ARN, so it gets the
# region pair and the mount, but no credential pair.
test_fixture_raw_pod_skip if {
	pod := t.pod({"eks.amazonaws.com/skip-containers": "sidecar"}, {"containers": [
		t.container("sidecar"),
		t.container_env(name, [t.env("AWS_ROLE_ARN", "already-defined")]),
	]})
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "us-west-2"}) == [
		t.web_volume(86400),
		t.add_env(name, t.region_env("us-west-2")),
		t.web_mount(name),
	]
}

# 14. rawPodWithGRPC: unrelated container fields do not matter (the engine patches additively).
test_fixture_raw_pod_with_grpc if {
	pod := t.pod({}, {"containers": [object.union(t.container(name), {"readinessProbe": {"grpc": {"port": 5000}}})]})
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "seattle"}) == [
		t.web_volume(86400),
		t.add_env(name, array.concat(t.region_env("seattle"), t.web_env(t.role))),
		t.web_mount(name),
	]
}

# 15. rawPodWithInitContainer: an init container and a native sidecar
# (restartPolicy: Always) are injected like any container, init containers first.
test_fixture_raw_pod_with_init_container if {
	pod := t.pod({}, {
		"initContainers": [
			t.container("initcontainer"),
			object.union(t.container("sidecar"), {"restartPolicy": "Always"}),
		],
		"containers": [t.container(name)],
	})
	env := array.concat(t.region_env("seattle"), t.web_env(t.role))
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "seattle"}) == [
		t.web_volume(86400),
		t.init(t.add_env("initcontainer", env)),
		t.init(t.add_env("sidecar", env)),
		t.add_env(name, env),
		t.init(t.web_mount("initcontainer")),
		t.init(t.web_mount("sidecar")),
		t.web_mount(name),
	]
}

# 16. rawPodWithVolumes: an existing volume list: the token volume goes first.
test_fixture_raw_pod_with_volumes if {
	pod := t.pod({}, {"containers": [t.container(name)], "volumes": [{"name": "my-volume"}]})
	_mutations(pod, t.fixture_sa(t.role), {}) == [
		t.web_volume(86400),
		t.add_env(name, t.web_env(t.role)),
		t.web_mount(name),
	]
}

# 17. rawPodWithoutVolumes: the baseline.
test_fixture_raw_pod_without_volumes if {
	_mutations(t.simple_pod, t.fixture_sa(t.role), {}) == [
		t.web_volume(86400),
		t.add_env(name, t.web_env(t.role)),
		t.web_mount(name),
	]
}

# 18. rawPodWithsecCompProfile
test_fixture_raw_pod_with_seccomp_profile if {
	pod := t.pod({}, {"containers": [object.union(t.container(name), {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}})]})
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "seattle"}) == [
		t.web_volume(86400),
		t.add_env(name, array.concat(t.region_env("seattle"), t.web_env(t.role))),
		t.web_mount(name),
	]
}

# Not in web-identity mode: no mutations, whatever the conditions said.
test_no_role_no_mutations if {
	not _mutations(t.simple_pod, t.sa({}), {})
	not _mutations(t.simple_pod, null, {})
	not web_identity.mutations with input as t.make_input(t.simple_pod, t.fixture_sa(t.role), t.cc_identities, {})
}

# A second invocation on the pod as left by the first adds nothing.
test_reinvocation_adds_nothing if {
	pod := t.pod({}, {
		"containers": [object.union(
			t.container_env(name, array.concat(t.region_env("seattle"), t.web_env(t.role))),
			{"volumeMounts": [{"name": "aws-iam-token", "readOnly": true, "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}]},
		)],
		"volumes": [t.projected("aws-iam-token", "sts.amazonaws.com", 86400, "token")],
	})
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "seattle"}) == []
}

# Every container skipped: the volume is still added.
test_all_skipped_still_adds_volume if {
	pod := t.pod({"eks.amazonaws.com/skip-containers": "balajilovesoreos"}, {"containers": [t.container(name)]})
	_mutations(pod, t.fixture_sa(t.role), {}) == [t.web_volume(86400)]
}

# Ephemeral containers are never considered.
test_ephemeral_containers_ignored if {
	pod := t.pod({}, {"containers": [t.container(name)], "ephemeralContainers": [t.container("debug")]})
	_mutations(pod, t.fixture_sa(t.role), {}) == [
		t.web_volume(86400),
		t.add_env(name, t.web_env(t.role)),
		t.web_mount(name),
	]
}

# A container with only AWS_WEB_IDENTITY_TOKEN_FILE never gets AWS_ROLE_ARN.
test_group_semantics_token_file_blocks_role if {
	pod := t.pod({}, {"containers": [t.container_env(name, [t.env("AWS_WEB_IDENTITY_TOKEN_FILE", "/x")])]})
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "eu-west-1"}) == [
		t.web_volume(86400),
		t.add_env(name, t.region_env("eu-west-1")),
		t.web_mount(name),
	]
}

# Only AWS_DEFAULT_REGION present blocks both region keys.
test_group_semantics_default_region_blocks_region if {
	pod := t.pod({}, {"containers": [t.container_env(name, [t.env("AWS_DEFAULT_REGION", "x")])]})
	_mutations(pod, t.fixture_sa(t.role), {"awsDefaultRegion": "eu-west-1"}) == [
		t.web_volume(86400),
		t.add_env(name, t.web_env(t.role)),
		t.web_mount(name),
	]
}

# The untouched rule applies even when neither region nor STS would be injected.
test_untouched_without_region_or_sts_flags if {
	pod := t.pod({}, {"containers": [t.container_env(name, [
		t.env("AWS_ROLE_ARN", "r"),
		t.env("AWS_REGION", "x"),
		t.env("AWS_STS_REGIONAL_ENDPOINTS", "legacy"),
	])]})
	_mutations(pod, t.fixture_sa(t.role), {}) == [t.web_volume(86400)]
}

# A mount path that needs cleaning: the token file is cleaned, the mount keeps it raw.
test_mount_path_cleaned_only_in_token_file if {
	ms := _mutations(t.simple_pod, t.fixture_sa(t.role), {"tokenMountPath": "/var/run//x/"})
	ms[1] == t.add_env(name, [t.env("AWS_ROLE_ARN", t.role), t.env("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/x/token")])
	ms[2].volumeMount == {"name": "aws-iam-token", "readOnly": true, "mountPath": "/var/run//x/"}
}

test_notes_explain_decisions if {
	pod := t.pod({"eks.amazonaws.com/skip-containers": "sidecar", "eks.amazonaws.com/token-expiration": "3600"}, {
		"containers": [
			t.container("sidecar"),
			t.container_env("app", [t.env("AWS_ROLE_ARN", "x")]),
			t.container_env("done", [t.env("AWS_ROLE_ARN", "x"), t.env("AWS_REGION", "x"), t.env("AWS_STS_REGIONAL_ENDPOINTS", "regional")]),
		],
		"volumes": [{"name": "aws-iam-token", "emptyDir": {}}],
	})
	notes := web_identity.notes with input as t.wi_input(pod, t.fixture_sa(t.role), {})
	"container \"sidecar\" skipped: listed in eks.amazonaws.com/skip-containers" in notes
	"container \"app\" already has AWS_ROLE_ARN or AWS_WEB_IDENTITY_TOKEN_FILE: credential env not added" in notes
	"container \"done\" has credential, region and STS env: left untouched (no mount)" in notes
	"volume aws-iam-token exists: not added" in notes
	"token expiration 3600 s from pod annotation eks.amazonaws.com/token-expiration" in notes
	"role arn:aws:iam::111122223333:role/s3-reader from ServiceAccount annotation eks.amazonaws.com/role-arn" in notes
	"audience sts.amazonaws.com from ServiceAccount annotation eks.amazonaws.com/audience" in notes
	"regional STS endpoints off from --sts-regional-endpoint" in notes
	"no region injected: --aws-default-region is empty" in notes
}
