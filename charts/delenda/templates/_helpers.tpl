{{/* The chart name. */}}
{{- define "delenda.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name. */}}
{{- define "delenda.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the pods; never change them across upgrades. */}}
{{- define "delenda.selectorLabels" -}}
app.kubernetes.io/name: {{ include "delenda.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "delenda.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "delenda.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "delenda.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "delenda.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
  What the operator does in the namespaces it watches: read the delenda.dev
  resources and write their status (server-side apply), read credential and
  identity Secrets (and delete an identity Secret when an ErasureRequest asks
  for it), keep the evidence chains in ConfigMaps (list their segments,
  create and append; never delete), and record Events (both APIs;
  recorders create, then patch).
  With watchNamespace this is a Role in that one namespace.
*/}}
{{- define "delenda.managerRules" -}}
- apiGroups: ["delenda.dev"]
  resources: ["datastores", "retentionpolicies", "erasurerequests", "holds", "accessrequests"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["delenda.dev"]
  resources: ["datastores/status", "retentionpolicies/status", "erasurerequests/status", "holds/status", "accessrequests/status"]
  verbs: ["patch"]
# A Hold's finalizer: added when it is placed, removed once a deleted hold
# has lifted its legal holds and recorded the lifting.
- apiGroups: ["delenda.dev"]
  resources: ["holds"]
  verbs: ["patch"]
# Secrets. list and watch: by metadata only (names, labels, versions), to
# notice a changed credentials or identity Secret; the operator caches no
# Secret's data. get: the data of a Secret a DataStore or ErasureRequest
# names, when it is used. delete: only an identity Secret (labelled
# delenda.dev/identity: "true", never a DataStore's credentials) once its
# request completed with deleteIdentitySecret. RBAC cannot say these
# limits; the operator keeps them (docs/safety.md).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The image: repository:tag, pinned with @digest when one is given. */}}
{{- define "delenda.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end }}
