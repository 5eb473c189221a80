{{- /*
  The restricted security context of the chart's pods (the operator's and the uninstall check's): uid and gid
  65532, no privilege escalation, no capabilities, a read-only root filesystem, the runtime's seccomp profile.
*/ -}}
{{- define "ordersystem-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "ordersystem-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
