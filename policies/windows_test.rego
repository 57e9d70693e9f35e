package pod_identity.windows_test

import data.pod_identity.testutil as t
import data.pod_identity.windows

_pod(node_selector) := t.pod({}, {"containers": [t.container("c")], "nodeSelector": node_selector})

_token_file(node_selector) := f if {
	f := windows.token_file with input as t.wi_input(_pod(node_selector), t.fixture_sa(t.role), {})
}

test_windows_node_selectors if {
	_token_file({"kubernetes.io/os": "windows"}) == `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`
	_token_file({"beta.kubernetes.io/os": "windows"}) == `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`
}

# Exact match only; other selectors (or none) keep the Linux path.
test_not_windows if {
	_token_file({"kubernetes.io/os": "Windows"}) == t.token_file
	_token_file({"kubernetes.io/os": "linux"}) == t.token_file
	_token_file({"os": "windows"}) == t.token_file
	f := windows.token_file with input as t.wi_input(t.simple_pod, t.fixture_sa(t.role), {})
	f == t.token_file
}

test_windows_path if {
	windows.windows_path("/a/b/c") == `C:\a\b\c`
}
