package pod_identity.annotations_test

import data.pod_identity.annotations

test_keys_follow_prefix if {
	annotations.role_arn == "example.com/role-arn" with input as {"params": {"annotationPrefix": "example.com"}}
	annotations.audience == "example.com/audience" with input as {"params": {"annotationPrefix": "example.com"}}
	annotations.sts_regional_endpoints == "eks.amazonaws.com/sts-regional-endpoints" with input as {"params": {}}
	annotations.token_expiration == "eks.amazonaws.com/token-expiration" with input as {"params": {"annotationPrefix": "eks.amazonaws.com"}}
	annotations.skip_containers == "eks.amazonaws.com/skip-containers" with input as {"params": {}}
}

test_pod_annotations if {
	annotations.pod == {} with input as {"object": {"metadata": {}}}
	annotations.pod == {} with input as {"object": {"metadata": {"annotations": null}}}
	annotations.pod == {"a": "b"} with input as {"object": {"metadata": {"annotations": {"a": "b"}}}}
}
