// Package archive unpacks one OCI/Docker image layer (a tar stream) into a
// directory in the form overlayfs reads as a lower layer.
//
// The layer is untrusted input. Every file is created relative to a directory
// file descriptor that was opened without following symlinks and without
// leaving the layer root (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a
// component-by-component O_NOFOLLOW walk on kernels without openat2), so no
// entry can be written through a symlink planted by an earlier entry, and a
// path that would need one is refused. os.Root is not used because it
// follows symlinks that stay inside the root (so "a -> b" then "a/x" would
// write through a) and walks the whole path again on every call, where
// Apply keeps the parent directory open across the entries that share it.
//
// Entry names are read as if the layer root were "/": a leading "/" and "."
// components are dropped and "a/../b" means "b". A name whose ".." climbs
// above the root is refused, never clamped; the same rule applies to hardlink
// targets.
//
// Whiteouts are converted the way Docker's overlay2 driver stores them:
// ".wh.NAME" becomes a 0/0 character device NAME, and ".wh..wh..opq" sets
// trusted.overlay.opaque=y on its directory. Following the OCI image spec, a
// whiteout only hides lower layers: if its layer also holds NAME, NAME is kept
// (and, when it is a directory, made opaque, which is what "lower NAME
// removed, this layer's NAME added" means to overlayfs).
package archive
