{{/*
Names. The full name is kept to 52 characters: pod names add "-<ordinal>" and the StatefulSet's
controller-revision-hash label adds "-<hash>" to it, within the 63 of a label value.
*/}}
{{- define "jet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "jet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: stable pod DNS names, peer and gossip traffic. */}}
{{- define "jet.headlessName" -}}
{{- printf "%s-headless" (include "jet.fullname" .) -}}
{{- end -}}

{{/* The DNS domain under which every pod has its stable name: <pod>.<this>. */}}
{{- define "jet.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "jet.headlessName" .) .Release.Namespace .Values.cluster.clusterDomain -}}
{{- end -}}

{{/* The cluster id: cluster.id, else the full name. */}}
{{- define "jet.clusterId" -}}
{{- default (include "jet.fullname" .) .Values.cluster.id -}}
{{- end -}}

{{- define "jet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the release's pods (StatefulSet, Services, PDB). */}}
{{- define "jet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "jet.labels" -}}
helm.sh/chart: {{ include "jet.chart" . }}
{{ include "jet.selectorLabels" . }}
app.kubernetes.io/component: broker
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "jet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The gossip address of every pod, comma-separated: the --seeds of each node. */}}
{{- define "jet.seeds" -}}
{{- $fullname := include "jet.fullname" . -}}
{{- $domain := include "jet.podDomain" . -}}
{{- $seeds := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $seeds = append $seeds (printf "%s-%d.%s:%d" $fullname $i $domain (int $.Values.ports.gossip)) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}

{{/* Checks values that would start pods that cannot form or serve. */}}
{{- define "jet.validate" -}}
{{- if lt (int .Values.replicas) 1 -}}
{{- fail "replicas must be at least 1" -}}
{{- end -}}
{{- if and .Values.external.enabled (eq (int .Values.external.containerPort) (int .Values.ports.kafka)) -}}
{{- fail "external.containerPort must differ from ports.kafka" -}}
{{- end -}}
{{- $ports := list (int .Values.ports.kafka) (int .Values.ports.peer) (int .Values.ports.http) -}}
{{- if ne (len (uniq $ports)) 3 -}}
{{- fail "ports.kafka, ports.peer and ports.http must be three different ports" -}}
{{- end -}}
{{- if and (ne (int .Values.ports.gossip) (int .Values.ports.peer)) (has (int .Values.ports.gossip) $ports) -}}
{{- fail "ports.gossip is UDP: it may equal ports.peer, or be a port of its own" -}}
{{- end -}}
{{/*
The cluster size is fixed when the cluster forms: an upgrade of a running release must keep it.
`lookup` reads the live StatefulSet during `helm install/upgrade` (it is empty in `helm template`
and offline renders).
*/}}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "jet.fullname" .) -}}
{{- if $live -}}
{{- $formed := dig "metadata" "annotations" "jet/bootstrap-expect" "" $live -}}
{{- if and $formed (ne (toString $formed) (toString (int .Values.replicas))) -}}
{{- fail (printf "replicas is %d but this cluster formed with %s nodes: Jet cannot add or remove nodes of a running cluster yet (see docs/kubernetes.md)" (int .Values.replicas) (toString $formed)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
