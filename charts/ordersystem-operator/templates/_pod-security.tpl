{{- /*
  The restricted security context of the chart's pods (the operator's, the uninstall check's and the test's):
  uid and gid 65532, no privilege escalation, no capabilities, a read-only root filesystem, the runtime's
  seccomp profile. `podSecurityContext` and `securityContext` in the values replace them whole when set (on
  OpenShift, whose restricted profile assigns the uid, leave runAsUser and runAsGroup out).
*/ -}}
{{- define "ordersystem-operator.podSecurityContext" -}}
{{- if .Values.podSecurityContext }}
{{- toYaml .Values.podSecurityContext }}
{{- else -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}
{{- end -}}

{{- define "ordersystem-operator.containerSecurityContext" -}}
{{- if .Values.securityContext }}
{{- toYaml .Values.securityContext }}
{{- else -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}
{{- end -}}
