{{/*
Helpers of the admission guards (templates/admission-policies.yaml).
*/}}

{{/* Name of the ConfigMap that holds the lists of both policies (their params). */}}
{{- define "aws-auth-operator.admissionParams" -}}
{{- printf "%s-admission" (include "aws-auth-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A list of regexes as one RE2 regex that matches a whole name matching any of them ("" for an
empty list: nothing matches). Each regex keeps its own meaning: `system:.*` is wrapped in its own
group, so alternations inside one regex do not leak into the others.
*/}}
{{- define "aws-auth-operator.wholeNameRegex" -}}
{{- if . }}
{{- $parts := list }}
{{- range . }}
{{- $parts = append $parts (printf "(?:%s)" .) }}
{{- end }}
{{- printf "^(?:%s)$" (join "|" $parts) }}
{{- end }}
{{- end }}

{{/*
A list of names as one comma-separated string (the policies test membership with
`(',' + list + ',').contains(',' + name + ',')`, standard CEL). A name with a comma could not be
told apart: the schema refuses commas in these lists.
*/}}
{{- define "aws-auth-operator.commaList" -}}
{{- join "," . }}
{{- end }}

{{/* The usernames of ServiceAccounts given as `namespace/name`. */}}
{{- define "aws-auth-operator.serviceAccountUsernames" -}}
{{- $names := list }}
{{- range . }}
{{- $parts := splitList "/" . }}
{{- $names = append $names (printf "system:serviceaccount:%s:%s" (index $parts 0) (index $parts 1)) }}
{{- end }}
{{- join "," $names }}
{{- end }}
