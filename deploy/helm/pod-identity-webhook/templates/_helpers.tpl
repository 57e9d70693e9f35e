{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "piw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the Service, Deployment, RBAC and Certificate names. */}}
{{- define "piw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "piw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "piw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "piw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "piw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: pod-identity-webhook
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "piw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "piw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace of the ConfigMaps and Events (--namespace): the release namespace unless set. */}}
{{- define "piw.watchNamespace" -}}
{{- default .Release.Namespace (index .Values.flags.cluster "namespace") -}}
{{- end -}}

{{/* The Secret holding tls.crt and tls.key. */}}
{{- define "piw.tlsSecretName" -}}
{{- if .Values.certManager.enabled -}}
{{- printf "%s-tls" (include "piw.fullname" .) -}}
{{- else -}}
{{- required "tls.existingSecret is required when certManager.enabled is false" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "piw.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A flag value as the command line wants it (numbers from YAML arrive as float64). */}}
{{- define "piw.flagString" -}}
{{- $v := . -}}
{{- if kindIs "float64" $v -}}
{{- if eq $v (float64 (int64 $v)) -}}{{- int64 $v -}}{{- else -}}{{- $v -}}{{- end -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/*
The command-line arguments, as a YAML list. flag-defaults.yaml lists every flag of the
binary with the binary's default (deploy/validate.sh keeps it in step with the code).
A flag under .Values.flags.<group> is passed when it is in $always or its value differs
from the binary's default; null never passes; an unknown flag name fails the rendering.
*/}}
{{- define "piw.args" -}}
{{- $defaults := .Files.Get "flag-defaults.yaml" | fromYaml -}}
{{- if not $defaults -}}{{- fail "flag-defaults.yaml is missing from the chart" -}}{{- end -}}
{{- $always := list "in-cluster" "port" "metrics-port" "tls-cert" "tls-key" "namespace" "watch-config-map" "service-account-lookup-grace-period" "shutdown-delay" "shutdown-grace-period" -}}
{{- $flags := dict -}}
{{- range $group := keys .Values.flags | sortAlpha -}}
{{- range $name, $v := index $.Values.flags $group | default dict -}}
{{- if not (hasKey $defaults $name) -}}
{{- fail (printf "flags.%s.%s: not a flag of pod-identity-webhook (see values.yaml)" $group $name) -}}
{{- end -}}
{{- if hasKey $flags $name -}}
{{- fail (printf "flags.%s.%s: set in two groups" $group $name) -}}
{{- end -}}
{{- $_ := set $flags $name $v -}}
{{- end -}}
{{- end -}}
{{- range $name := keys $flags | sortAlpha -}}
{{- $v := index $flags $name -}}
{{- $d := index $defaults $name -}}
{{- if and (eq $name "in-cluster") $v -}}
{{- fail "flags.server.in-cluster: must be false (upstream's CSR certificate mode is not supported; the certificate comes from cert-manager or tls.existingSecret)" -}}
{{- end -}}
{{- if eq $name "namespace" -}}
{{- printf "- %s\n" (printf "--namespace=%s" (default "$(POD_NAMESPACE)" $v) | quote) -}}
{{- else if and (eq $name "config") (not $v) $.Values.configFile -}}
{{- printf "- %s\n" ("--config=/etc/pod-identity-webhook/config.yaml" | quote) -}}
{{- else if kindIs "slice" $v -}}
{{- range $item := $v -}}
{{- printf "- %s\n" (printf "--%s=%s" $name (toString $item) | quote) -}}
{{- end -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $s := include "piw.flagString" $v -}}
{{- if or (has $name $always) (ne $s (include "piw.flagString" $d)) -}}
{{- printf "- %s\n" (printf "--%s=%s" $name $s | quote) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraArgs -}}
{{- printf "- %s\n" (toString . | quote) -}}
{{- end -}}
{{- end -}}

{{/* The labels of the bundle ConfigMaps, from the equality selector flags.policy.bundle-configmap-selector. */}}
{{- define "piw.bundleLabels" -}}
{{- $sel := index .Values.flags.policy "bundle-configmap-selector" -}}
{{- if not $sel -}}
{{- fail "siteBundles needs flags.policy.bundle-configmap-selector (empty disables bundle ConfigMaps)" -}}
{{- end -}}
{{- range $term := splitList "," $sel -}}
{{- $term = trim $term -}}
{{- if or (contains "!" $term) (not (contains "=" $term)) (regexMatch "\\s(in|notin)\\s" $term) -}}
{{- fail (printf "siteBundles: cannot label ConfigMaps for selector term %q; use equality terms (key=value)" $term) -}}
{{- end -}}
{{- $kv := regexSplit "==?" $term 2 -}}
{{ trim (index $kv 0) }}: {{ trim (index $kv 1) | quote }}
{{ end -}}
{{- end -}}

{{/* namespaceSelector expressions shared by both webhooks (webhook.namespaceSelector). */}}
{{- define "piw.extraNamespaceExpressions" -}}
{{- with .Values.webhook.namespaceSelector.matchExpressions -}}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "piw.matchConditions" -}}
{{- $conds := list -}}
{{- if .Values.webhook.matchConditions.skipMirrorPods -}}
{{- $conds = append $conds (dict "name" "not-a-mirror-pod" "expression" "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)") -}}
{{- end -}}
{{- range .Values.webhook.matchConditions.extra -}}
{{- $conds = append $conds . -}}
{{- end -}}
{{- if $conds -}}
matchConditions:
{{ toYaml $conds }}
{{- end -}}
{{- end -}}
