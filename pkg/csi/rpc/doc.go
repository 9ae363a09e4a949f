// Package rpc holds what every CSI service of layerset-csi does to a call
// before and after its own work: check the arguments, take the volume's
// in-flight slot, and turn the outcome into a gRPC status with the code
// the caller retries by.
package rpc
