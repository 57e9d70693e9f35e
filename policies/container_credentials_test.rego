# Container credentials (EKS Pod Identity): the upstream fixtures of
# testdata/containercredentials (section 7.1, #19-#24) and the mode's precedence rules.
# Upstream pins its random source so fixtures expect 79200; here the jitter is a hash of
# the pod, so the tests expect t.fixture_jitter (and check its range in expiration_test).
package pod_identity.container_credentials_test

import data.pod_identity.container_credentials
import data.pod_identity.testutil as t

name := "balajilovesoreos"

_mutations(pod, sa, overrides) := m if {
	m := t.per_container(container_credentials.mutations) with input as t.cc_input(pod, sa, overrides)
}

_cc_sa := t.sa({
	"eks.amazonaws.com/sts-regional-endpoints": "true",
	"eks.amazonaws.com/token-expiration": "10000",
})

# 19. rawPodNeedsAll: label, volume (exp 10000 from the SA), STS, region, CC pair, mount.
test_fixture_cc_raw_pod_needs_all if {
	_mutations(t.simple_pod, _cc_sa, {"awsDefaultRegion": "cn-north-1"}) == [
		t.cc_label,
		t.cc_volume(10000),
		t.add_env(name, array.concat(array.concat([t.sts_env], t.region_env("cn-north-1")), t.cc_env)),
		t.cc_mount(name),
	]
}

# 20. rawPodSkip: sidecar untouched; the default 86400 is jittered.
test_fixture_cc_raw_pod_skip if {
	pod := t.pod({"eks.amazonaws.com/skip-containers": "sidecar"}, {"containers": [t.container("sidecar"), t.container(name)]})
	_mutations(pod, t.sa({}), {}) == [
		t.cc_label,
		t.cc_volume(t.fixture_jitter),
		t.add_env(name, t.cc_env),
		t.cc_mount(name),
	]
}

# 21. rawPodWithConflictingVolumeMount: volume and mount of that name exist (elsewhere):
# no volume, no mount, env added (pointing at a path that is not mounted, as upstream).
test_fixture_cc_raw_pod_with_conflicting_volume_mount if {
	pod := t.pod({}, {
		"containers": [object.union(t.container(name), {"volumeMounts": [{"name": "con-creds-volume-name", "mountPath": "/some/other/path"}]})],
		"volumes": [{"name": "con-creds-volume-name", "hostPath": {"path": "/some/other/path"}}],
	})
	_mutations(pod, t.sa({}), {}) == [t.cc_label, t.add_env(name, t.cc_env)]
}

# 22. rawPodWithRoleArn: a CC identity whose SA also has a role: CC wins, no AWS_ROLE_ARN;
# STS and expiry come from the SA.
test_fixture_cc_raw_pod_with_role_arn if {
	sa := t.sa({
		"eks.amazonaws.com/role-arn": t.cn_role,
		"eks.amazonaws.com/sts-regional-endpoints": "true",
		"eks.amazonaws.com/token-expiration": "10000",
	})
	_mutations(t.simple_pod, sa, {}) == [
		t.cc_label,
		t.cc_volume(10000),
		t.add_env(name, array.concat([t.sts_env], t.cc_env)),
		t.cc_mount(name),
	]
}

# 23. rawPodWithVolume: an existing volume list: the token volume goes first.
test_fixture_cc_raw_pod_with_volume if {
	pod := t.pod({}, {"containers": [t.container(name)], "volumes": [{"name": "con-creds-token-path"}]})
	_mutations(pod, t.sa({}), {}) == [
		t.cc_label,
		t.cc_volume(t.fixture_jitter),
		t.add_env(name, t.cc_env),
		t.cc_mount(name),
	]
}

# 24. rawPodWithoutVolumes: the baseline.
test_fixture_cc_raw_pod_without_volumes if {
	_mutations(t.simple_pod, t.sa({}), {}) == [
		t.cc_label,
		t.cc_volume(t.fixture_jitter),
		t.add_env(name, t.cc_env),
		t.cc_mount(name),
	]
}

# The label key is a param and ignores the annotation prefix; an existing
# "enabled" label is not set again.
test_cc_label_ignores_prefix_and_existing_label if {
	ms := _mutations(t.simple_pod, t.sa({}), {"annotationPrefix": "example.com"})
	ms[0] == t.cc_label
	labelled := json.patch(t.simple_pod, [{"op": "add", "path": "/metadata/labels", "value": {"eks.amazonaws.com/pod-identity": "enabled"}}])
	ms2 := _mutations(labelled, t.sa({}), {})
	ms2[0] == t.cc_volume(t.fixture_jitter)
	count(ms2) == 3
}

# ServiceAccount missing: STS and expiry from the exact ConfigMap entry (0 = clamped flag).
test_cc_sa_missing_uses_exact_configmap_entry if {
	identities := object.union(t.cc_identities, {"configMap": t.cm_entry("default/default", false, "", "", true, 20000)})
	ms := t.per_container(container_credentials.mutations) with input as t.make_input(t.simple_pod, null, identities, t.cc_params)
	ms == [
		t.cc_label,
		t.cc_volume(20000),
		t.add_env(name, array.concat([t.sts_env], t.cc_env)),
		t.cc_mount(name),
	]
}

test_cc_sa_missing_exact_entry_without_expiry_uses_clamped_flag if {
	identities := object.union(t.cc_identities, {"configMap": t.cm_entry("default/default", false, "", "", false, 0)})
	ms := t.per_container(container_credentials.mutations) with input as t.make_input(t.simple_pod, null, identities, object.union(t.cc_params, {"tokenExpiration": 300}))
	ms[1] == t.cc_volume(600)
}

# ServiceAccount missing and only a wildcard entry: ignored, so false / 86400 (jittered).
test_cc_sa_missing_ignores_wildcard_entry if {
	identities := object.union(t.cc_identities, {"configMap": t.cm_entry("*/default", true, t.role, "", true, 20000)})
	ms := t.per_container(container_credentials.mutations) with input as t.make_input(t.simple_pod, null, identities, object.union(t.cc_params, {"stsRegionalEndpoint": true, "tokenExpiration": 3600}))
	ms == [
		t.cc_label,
		t.cc_volume(t.fixture_jitter),
		t.add_env(name, t.cc_env),
		t.cc_mount(name),
	]
	notes := container_credentials.notes with input as t.make_input(t.simple_pod, null, identities, t.cc_params)
	"ConfigMap entry */default ignored: container-credentials mode only uses exact entries" in notes
}

# ServiceAccount found (no annotations): the flags, not the ConfigMap entry.
test_cc_sa_found_beats_configmap if {
	identities := object.union(t.cc_identities, {"configMap": t.cm_entry("default/default", false, "", "", true, 20000)})
	ms := t.per_container(container_credentials.mutations) with input as t.make_input(t.simple_pod, t.sa({}), identities, object.union(t.cc_params, {"tokenExpiration": 5000}))
	ms == [
		t.cc_label,
		t.cc_volume(5000),
		t.add_env(name, t.cc_env),
		t.cc_mount(name),
	]
}

# Existing AWS_ROLE_ARN is left in place and does not block the CC pair.
test_cc_web_identity_env_does_not_block if {
	pod := t.pod({}, {"containers": [t.container_env(name, [t.env("AWS_ROLE_ARN", "x")])]})
	ms := _mutations(pod, t.sa({}), {})
	ms[2] == t.add_env(name, t.cc_env)
}

# The untouched rule uses the CC credential group.
test_cc_untouched_container if {
	pod := t.pod({}, {"containers": [t.container_env(name, [
		t.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "x"),
		t.env("AWS_REGION", "x"),
		t.env("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
	])]})
	_mutations(pod, t.sa({}), {}) == [t.cc_label, t.cc_volume(t.fixture_jitter)]
}

# Windows in CC mode: the token file env is a Windows path, the mount stays Unix.
test_cc_windows if {
	pod := t.pod({}, {"containers": [t.container(name)], "nodeSelector": {"kubernetes.io/os": "windows"}})
	ms := _mutations(pod, t.sa({}), {})
	ms[2] == t.add_env(name, [
		t.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "con-creds-uri"),
		t.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", `C:\con-creds-mount-path\con-creds-token-path`),
	])
	ms[3] == t.cc_mount(name)
}

# Not a CC identity: no mutations.
test_cc_not_listed_no_mutations if {
	not container_credentials.mutations with input as t.wi_input(t.simple_pod, t.fixture_sa(t.role), {})
}

test_cc_notes if {
	sa := t.sa({"eks.amazonaws.com/role-arn": t.role})
	notes := container_credentials.notes with input as t.cc_input(t.simple_pod, sa, {})
	"container credentials: default/default is listed in the identities file" in notes
	"ServiceAccount annotation eks.amazonaws.com/role-arn ignored: container credentials take precedence" in notes
	"label eks.amazonaws.com/pod-identity=enabled added" in notes
	"token expiration 86400 s from --token-expiration" in notes
	"audience con-creds-aud from --container-credentials-audience" in notes
	msg := sprintf("token expiration 86400 s jittered to %d s (container-credentials mode; hash of \"default/balajilovesoreos/default\", shared by replicas of one template)", [t.fixture_jitter])
	msg in notes
}
