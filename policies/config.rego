# The policy params (input.params), each with the upstream default as fallback.
#
# The engine gives a policy the flag params overlaid by its own bundle's params. The
# hard-coded upstream values (webIdentityTokenVolumeName, podIdentityLabel, ...) come
# from this bundle's manifest, so a rule of another bundle that calls into this one
# (e.g. data.pod_identity.identity.settings) runs without them: hence the fallbacks.
package pod_identity.config

_param(name, fallback) := v if {
	v := input.params[name]
	v != null
} else := fallback

annotation_prefix := _param("annotationPrefix", "eks.amazonaws.com")

token_audience := _param("tokenAudience", "sts.amazonaws.com")

token_mount_path := _param("tokenMountPath", "/var/run/secrets/eks.amazonaws.com/serviceaccount")

aws_default_region := _param("awsDefaultRegion", "")

sts_regional_endpoint := _param("stsRegionalEndpoint", false) == true

compose_role_arn := _param("composeRoleArn", false) == true

aws_partition := _param("awsPartition", "")

aws_account_id := _param("awsAccountID", "")

container_credentials_audience := _param("containerCredentialsAudience", "pods.eks.amazonaws.com")

container_credentials_token_mount_path := _param(
	"containerCredentialsTokenMountPath",
	"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
)

container_credentials_token_volume_name := _param("containerCredentialsTokenVolumeName", "eks-pod-identity-token")

container_credentials_token_path := _param("containerCredentialsTokenPath", "eks-pod-identity-token")

container_credentials_full_uri := _param("containerCredentialsFullURI", "http://169.254.170.23/v1/credentials")

web_identity_token_volume_name := _param("webIdentityTokenVolumeName", "aws-iam-token")

web_identity_token_path := _param("webIdentityTokenPath", "token")

pod_identity_label := _param("podIdentityLabel", "eks.amazonaws.com/pod-identity")

min_token_expiration := _param("minTokenExpiration", 600)

container_credentials_default_token_expiration := _param("containerCredentialsDefaultTokenExpiration", 86400)

container_credentials_jitter_min := _param("containerCredentialsJitterMin", 79200)

# The raw --token-expiration flag (the engine passes it unclamped).
token_expiration_flag := _param("tokenExpiration", 86400)

# Upstream raises the flag to the minimum at startup; there is no maximum.
token_expiration_default := max([token_expiration_flag, min_token_expiration])
