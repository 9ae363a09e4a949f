{{/*
The CSI driver's name. The node plugin and the controller report it, the
kubelet keys its plugin directory by it, and PersistentVolumes store it: it is
fixed, so there is one layerset-csi per cluster.
*/}}
{{- define "layerset-csi.driverName" -}}
csi.layerset.io
{{- end }}

{{- define "layerset-csi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
<release>-<chart>, or the release name alone when it already contains the
chart's name. Object names append -node or -controller, so it stays below 52.
*/}}
{{- define "layerset-csi.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "layerset-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "layerset-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: layerset-csi
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (node or controller): never change them. */}}
{{- define "layerset-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "layerset-csi.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "layerset-csi.componentLabels" -}}
{{ include "layerset-csi.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "layerset-csi.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "layerset-csi.sidecarImage" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{- define "layerset-csi.nodeServiceAccount" -}}
{{- default (printf "%s-node" (include "layerset-csi.fullname" .)) .Values.node.serviceAccount.name }}
{{- end }}

{{- define "layerset-csi.controllerServiceAccount" -}}
{{- default (printf "%s-controller" (include "layerset-csi.fullname" .)) .Values.controller.serviceAccount.name }}
{{- end }}

{{/* The kubelet's plugin directory for this driver; its socket is the kubelet's endpoint. */}}
{{- define "layerset-csi.pluginDir" -}}
{{- printf "%s/plugins/%s" .Values.kubeletRootDir (include "layerset-csi.driverName" .) }}
{{- end }}
