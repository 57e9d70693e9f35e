package pod_identity.service_account_test

import data.pod_identity.service_account
import data.pod_identity.testutil as t

_in(sa, overrides) := t.wi_input(t.simple_pod, sa, overrides)

test_found_and_key if {
	service_account.found with input as _in(t.sa({}), {})
	not service_account.found with input as _in(null, {})
	service_account.key == "default/default" with input as _in(t.sa({}), {})
	service_account.metadata_annotations == {} with input as _in(null, {})
}

# An empty role-arn counts as no role.
test_role_arn if {
	service_account.role_arn == t.role with input as _in(t.sa({"eks.amazonaws.com/role-arn": t.role}), {})
	not service_account.role_arn with input as _in(t.sa({"eks.amazonaws.com/role-arn": ""}), {})
	not service_account.role_arn with input as _in(t.sa({"other.example/role-arn": t.role}), {})
}

test_role_arn_composition if {
	flags := {"composeRoleArn": true, "awsPartition": "aws-cn", "awsAccountID": "444455556666"}
	service_account.role_arn == "arn:aws-cn:iam::444455556666:role/x" with input as _in(t.sa({"eks.amazonaws.com/role-arn": "x"}), flags)
	service_account.role_arn_composed with input as _in(t.sa({"eks.amazonaws.com/role-arn": "x"}), flags)
	not service_account.role_arn_composed with input as _in(t.sa({"eks.amazonaws.com/role-arn": t.role}), flags)
}

test_audience_verbatim if {
	service_account.audience == "" with input as _in(t.sa({"eks.amazonaws.com/audience": ""}), {})
	service_account.audience == "a b" with input as _in(t.sa({"eks.amazonaws.com/audience": "a b"}), {})
	not service_account.audience with input as _in(t.sa({}), {})
}

test_regional_sts_parse if {
	service_account.regional_sts == true with input as _in(t.sa({"eks.amazonaws.com/sts-regional-endpoints": "1"}), {})
	service_account.regional_sts == false with input as _in(t.sa({"eks.amazonaws.com/sts-regional-endpoints": "F"}), {})
	not service_account.regional_sts with input as _in(t.sa({"eks.amazonaws.com/sts-regional-endpoints": "yes"}), {})
	service_account.regional_sts_invalid == "yes" with input as _in(t.sa({"eks.amazonaws.com/sts-regional-endpoints": "yes"}), {})
	not service_account.regional_sts_invalid with input as _in(t.sa({"eks.amazonaws.com/sts-regional-endpoints": "false"}), {})
}

test_token_expiration_decision if {
	d := service_account.token_expiration_decision with input as _in(t.sa({"eks.amazonaws.com/token-expiration": "100"}), {})
	d == {"value": 600, "from": "ServiceAccount annotation eks.amazonaws.com/token-expiration (\"100\" raised to the 600 s minimum)"}
	d2 := service_account.token_expiration_decision with input as _in(t.sa({"eks.amazonaws.com/token-expiration": "3600s"}), {"tokenExpiration": 7200})
	d2 == {"value": 7200, "from": "--token-expiration"}
	service_account.token_expiration_invalid == "3600s" with input as _in(t.sa({"eks.amazonaws.com/token-expiration": "3600s"}), {})
}
