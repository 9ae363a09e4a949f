// Package source resolves an image reference to the digest-pinned, ordered
// list of layers it is made of, and opens those layers' blobs with their
// content checked against the manifest.
//
// A reference names either a registry image ("registry.example.com/app:v1",
// "registry.example.com/app@sha256:...") or an image in an OCI image layout
// on the local disk ("oci:/var/lib/images/app:v1", "oci:/dir@sha256:...").
// Resolution always ends at one image manifest: multi-platform indexes are
// narrowed to the node's platform, and the result names that manifest by
// digest, so resolving Image.Pinned again yields the same layers.
//
// Registry blobs are read by the package's own fetcher, over the same
// authenticated session as the manifests: blobs of Options.RangeThreshold
// bytes or more as parallel HTTP range requests reassembled in order, others
// as one streaming GET, and either resumed from the byte reached when a
// connection drops. Size and digest are checked as the bytes are read.
package source
