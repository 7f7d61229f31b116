{{- define "kernelkeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kernelkeeper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kernelkeeper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
app.kubernetes.io/name: {{ include "kernelkeeper.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "kernelkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kernelkeeper.name" .ctx | quote }}
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end }}

{{- define "kernelkeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kernelkeeper.authSecretName" -}}
{{- default (printf "%s-gateway-token" (include "kernelkeeper.fullname" .)) .Values.gateway.authToken.existingSecret }}
{{- end }}

{{- define "kernelkeeper.availabilityMode" -}}
{{- $mode := .Values.gateway.availabilityMode }}
{{- if not (has $mode (list "active-active" "active-passive")) }}
{{- fail (printf "gateway.availabilityMode must be active-active or active-passive, not %q" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{- define "kernelkeeper.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/* The directory where the kernelspecs sidecar lays out the specs from values. */}}
{{- define "kernelkeeper.syncedKernelspecDir" -}}
/var/lib/kernelkeeper/kernelspecs
{{- end }}

{{/* Kernelspec directories of operator and gateway, in search order. */}}
{{- define "kernelkeeper.kernelspecDirs" -}}
{{- $dirs := list }}
{{- if .Values.kernelspecSync.enabled }}
{{- $dirs = append $dirs (include "kernelkeeper.syncedKernelspecDir" .) }}
{{- end }}
{{- with .Values.kernelspecPath }}
{{- $dirs = append $dirs . }}
{{- end }}
{{- toJson $dirs }}
{{- end }}

{{/* Pod and container securityContext: restricted Pod Security by default. */}}
{{- define "kernelkeeper.podSecurityContext" -}}
{{- with .Values.podSecurityContext -}}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "kernelkeeper.securityContext" -}}
{{- with .Values.securityContext -}}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The kernelspecs sidecar (a native sidecar: an init container that keeps running). A ConfigMap
volume has no subdirectories unless the Pod lists every file in `items`, and a changed Pod
template means a rollout; so the ConfigMap holds one JSON document and this container lays it
out as Jupyter kernelspec directories, again whenever the kubelet refreshes the volume. Its
startup probe holds the main container back until the first layout exists.
*/}}
{{- define "kernelkeeper.kernelspecSidecar" -}}
{{- if .Values.kernelspecSync.enabled -}}
- name: kernelspecs
  image: {{ include "kernelkeeper.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy | quote }}
  restartPolicy: Always
  command:
    - python
    - /etc/kernelkeeper/scripts/sync_kernelspecs.py
    - /etc/kernelkeeper/kernelspecs-source/kernelspecs.json
    - {{ include "kernelkeeper.syncedKernelspecDir" . | quote }}
    - {{ .Values.kernelspecSync.interval | toString | quote }}
  startupProbe:
    exec:
      command: ["test", "-e", "{{ include "kernelkeeper.syncedKernelspecDir" . }}/.synced"]
    periodSeconds: 1
    failureThreshold: 60
  {{- include "kernelkeeper.securityContext" . | nindent 2 }}
  {{- with .Values.kernelspecSync.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: kernelspecs-source
      mountPath: /etc/kernelkeeper/kernelspecs-source
      readOnly: true
    - name: scripts
      mountPath: /etc/kernelkeeper/scripts
      readOnly: true
    - name: kernelspecs
      mountPath: {{ include "kernelkeeper.syncedKernelspecDir" . | quote }}
{{- end }}
{{- end }}

{{/* Volume mounts of the operator and gateway containers. */}}
{{- define "kernelkeeper.mainVolumeMounts" -}}
# The root filesystem is read-only; whatever a library puts in /tmp goes here.
- name: tmp
  mountPath: /tmp
{{- if .Values.kernelspecSync.enabled }}
- name: kernelspecs
  mountPath: {{ include "kernelkeeper.syncedKernelspecDir" . | quote }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Volumes of the operator and gateway Pods. */}}
{{- define "kernelkeeper.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.kernelspecSync.enabled }}
- name: kernelspecs
  emptyDir:
    sizeLimit: 16Mi
- name: kernelspecs-source
  configMap:
    name: {{ include "kernelkeeper.fullname" . }}-kernelspecs
- name: scripts
  configMap:
    name: {{ include "kernelkeeper.fullname" . }}-scripts
{{- end }}
{{- end }}

{{/* Call with (dict "ctx" $ "component" "gateway"): a PodDisruptionBudget, or nothing. */}}
{{- define "kernelkeeper.pdb" -}}
{{- $values := index .ctx.Values .component }}
{{- $pdb := $values.podDisruptionBudget }}
{{- if and $pdb.enabled (gt (int $values.replicas) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "kernelkeeper.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace | quote }}
  labels:
    {{- include "kernelkeeper.labels" .ctx | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not (kindIs "invalid" $pdb.minAvailable) }}
  minAvailable: {{ $pdb.minAvailable | toJson }}
  {{- else }}
  maxUnavailable: {{ (kindIs "invalid" $pdb.maxUnavailable) | ternary 1 $pdb.maxUnavailable | toJson }}
  {{- end }}
  # A Pod that is not Ready adds nothing to availability: a drain may always evict it.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "kernelkeeper.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end }}
