// Package registration announces a CSI plugin to the kubelet through the
// kubelet's plugin registration API, the job node-driver-registrar does as a
// sidecar: it serves a socket in the kubelet's plugins_registry directory
// that tells the kubelet the plugin's name and CSI endpoint.
package registration
