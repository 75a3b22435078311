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

{{/*
The number of nodes the cluster formed with (--bootstrap-expect): the live StatefulSet's
`jet/bootstrap-expect` annotation during `helm upgrade`, else (a new release, and offline renders
where `lookup` finds nothing) `replicas`. It stays the same when the StatefulSet grows, so adding
pods changes no existing pod's flags and restarts none.
*/}}
{{- define "jet.formedSize" -}}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "jet.fullname" .) -}}
{{- $formed := "" -}}
{{- if $live -}}
{{- $formed = dig "metadata" "annotations" "jet/bootstrap-expect" "" $live -}}
{{- end -}}
{{- if $formed -}}{{ toString $formed }}{{- else -}}{{ int .Values.replicas }}{{- end -}}
{{- end -}}

{{/* The gossip address of every pod the cluster formed with, comma-separated: the --seeds of
each node (pods added later find the cluster through them). */}}
{{- define "jet.seeds" -}}
{{- $fullname := include "jet.fullname" . -}}
{{- $domain := include "jet.podDomain" . -}}
{{- $seeds := list -}}
{{- range $i := until (int (include "jet.formedSize" .)) -}}
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
A running cluster can grow: pods added to the StatefulSet start with the formed size as
--bootstrap-expect, find the running cluster in gossip and join it. It cannot shrink: Jet has no
decommissioning, and removed pods would take shard majorities with them. A cluster formed as one
node has no gossip or peer flags at all, so it stays one node.
*/}}
{{- $formed := int (include "jet.formedSize" .) -}}
{{- $replicas := int .Values.replicas -}}
{{- if lt $replicas $formed -}}
{{- fail (printf "replicas is %d but this cluster formed with %d nodes: Jet cannot remove nodes of a running cluster (see docs/kubernetes.md)" $replicas $formed) -}}
{{- end -}}
{{- if and (eq $formed 1) (ne $replicas 1) -}}
{{- fail (printf "replicas is %d but this cluster formed with 1 node, which runs without cluster flags: it cannot grow (see docs/kubernetes.md)" $replicas) -}}
{{- end -}}
{{- end -}}
