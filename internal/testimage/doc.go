// Package testimage builds small, deterministic OCI images and serves them
// from an in-process registry or an OCI image layout, for tests across the
// repository.
//
// Everything it produces is byte-for-byte reproducible: entries carry a fixed
// modification time unless one is given, compression runs single-threaded
// with fixed settings, and index entries are sorted by platform. The same
// inputs therefore always yield the same digests.
package testimage
