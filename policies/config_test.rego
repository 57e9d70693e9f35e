package pod_identity.config_test

import data.pod_identity.config

test_fallbacks_without_params if {
	config.web_identity_token_volume_name == "aws-iam-token" with input as {"params": {}}
	config.pod_identity_label == "eks.amazonaws.com/pod-identity" with input as {}
	config.token_expiration_default == 86400 with input as {"params": {}}
	config.container_credentials_jitter_min == 79200 with input as {"params": {"containerCredentialsJitterMin": null}}
}

test_flag_clamped if {
	config.token_expiration_default == 600 with input as {"params": {"tokenExpiration": 10}}
	config.token_expiration_default == 700 with input as {"params": {"tokenExpiration": 700}}
	config.token_expiration_default == 1000 with input as {"params": {"tokenExpiration": 500, "minTokenExpiration": 1000}}
}
