# Windows pods: the token file path in the env var becomes "C:\..." (the mount path
# stays in Unix form). Only the nodeSelector is looked at, as upstream does: pods placed
# on Windows by nodeAffinity, a RuntimeClass or spec.os.name are not detected.
package pod_identity.windows

import data.pod_identity.identity

# The OS node label, or its beta form: one body each rather than a loop over a list,
# which costs more in OPA's evaluator (this runs on every admission).
is_windows if input.object.spec.nodeSelector["kubernetes.io/os"] == "windows"

is_windows if input.object.spec.nodeSelector["beta.kubernetes.io/os"] == "windows"

windows_path(p) := identity.windows_path(p)

token_file := windows_path(identity.settings.tokenFile) if is_windows

else := identity.settings.tokenFile

notes contains sprintf("pod selects Windows nodes (nodeSelector): token file %s", [token_file]) if is_windows
