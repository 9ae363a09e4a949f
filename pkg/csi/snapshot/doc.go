// Package snapshot is the node side of CSI snapshots: a CSI Controller
// service, served by the node plugin on its own socket, that implements
// ControllerGetCapabilities, CreateSnapshot, DeleteSnapshot and
// ListSnapshots and nothing else (every other Controller RPC is
// Unimplemented).
//
// # Where a snapshot is made
//
// A persistent volume's writable upper lives on one node, so only that
// node can snapshot it. Kubernetes reaches it through external-snapshotter's
// distributed snapshotting: snapshot-controller runs with
// --enable-distributed-snapshotting and labels each VolumeSnapshotContent
// snapshot.storage.kubernetes.io/managed-by=NODE, NODE being the first
// Node object that matches the required node affinity of the source
// PersistentVolume (the affinity external-provisioner wrote from
// CreateVolume's accessible topology, topology.layerset.io/node=NODE); a
// csi-snapshotter sidecar in the node DaemonSet, run with
// --node-deployment and NODE_NAME set, watches only the contents labelled
// with its node and calls this service on the node's socket. A
// PersistentVolume without node affinity (a static one written without
// it) gets no label, and no sidecar takes its snapshots.
//
// # Snapshot ids
//
// A snapshot kept on the node (no repository parameter) has the id
//
//	<diffID hex, first 24>.<sha256(name) hex, first 16>@<node id>
//
// It names the committed layer (its uncompressed digest, which is also its
// directory in the layer store, ROOT/overlay2/<diffID hex>) and the node
// holding it, so a controller restoring the snapshot knows where a new
// volume can be composed without asking the node; the hash of the
// snapshot's name tells apart snapshots whose layers have equal content
// (two snapshots of an unchanged volume). The node id must be at most 86
// bytes of [A-Za-z0-9._-] for the id to fit CSI's 128 bytes; New refuses a
// longer one.
//
// A snapshot pushed to a registry (VolumeSnapshotClass parameter
// repository) has the pushed image's digest-pinned reference as its id,
//
//	<registry>/<repository>@sha256:<manifest digest hex>
//
// so that any node can restore it by pulling it. The repository is
// therefore at most 56 bytes. The image is the volume's chain, each layer
// its original blob, with the committed layer on top (layers.CommitImage);
// its config names the snapshot, so every snapshot has its own digest.
// It is also tagged <repository>:<snapshot name> (a name that is no valid
// tag is hashed into one), for people looking at the registry.
//
// # Records
//
// Each snapshot is a record in <StateDir>/snapshots/<name>.json (package
// record; synced), keyed by the CSI snapshot name: id, source volume,
// creation time, the committed layer's diff_id, digest, blob size and
// restore size, the chain below it (each layer's digest and where it came
// from), and the pushed reference. A record is written only when the
// snapshot is whole, so every record is a snapshot that is ready to use.
// Beside the records, <StateDir>/snapshots/blobs/<name>/ holds hard links
// (copies across filesystems) to the compressed blobs the store kept of
// the committed layer and of any committed layer in its chain: a layer
// with no volume using it may be removed by the store's garbage
// collection, and its blob is then what a restore imports it from again.
// <StateDir>/snapshots/.mnt/ holds the mount points of the short-lived
// private volumes described below. New removes what a crash left: blob
// folders without a record and private volumes.
//
// # What the RPCs do
//
// CreateSnapshot checks its arguments (name, source_volume_id; parameters
// repository and compression, zstd or gzip, plus the csi.storage.k8s.io/
// keys csi-snapshotter adds, any other key refused; secrets, used only
// for a push: username and password, or .dockerconfigjson as in a
// kubernetes.io/dockerconfigjson Secret; without secrets the node's own
// registry credentials are used), then takes the name's in-flight slot
// (Aborted while another call for the name runs). A name already recorded
// returns its snapshot when the source volume and parameters are the
// same, AlreadyExists otherwise. The snapshot is made synchronously: the
// volume's upper is committed into a layer (layers.Store.Commit; init
// files left out), the blobs are linked, the image pushed if asked, the
// record written; ready_to_use is true in every answer. The work runs
// apart from the call: when the caller's deadline (csi-snapshotter
// --timeout, one minute by default) passes first, the call returns
// DeadlineExceeded and the work goes on; the sidecar's retries get Aborted
// until it is done, then the snapshot. While a volume is being committed,
// the node's calls that mount, unmount or resize it get Aborted (GuardNode),
// as Store.Commit must not overlap them.
//
// The source volume decides the outcome: an inline ephemeral volume is
// InvalidArgument (it is never a snapshot source: its writes go with its
// pod, and the CO cannot name it in a VolumeSnapshot); a volume composed
// read-only is FailedPrecondition (it has no writable upper now, so
// nothing of its own to snapshot; staged writable it can be). A
// persistent volume this node composed is committed from its upper, staged
// or not. A volume this node never composed, which Config.Lookup knows
// (its PersistentVolume; the monolith's own controller records), holds
// nothing written yet: its snapshot is its LayerSet's chain, resolved now,
// with an empty layer on top, committed from a short-lived private volume.
// Any other volume is NotFound. A snapshot that is kept on the node answers
// with the node's topology segment as its accessible topology; asked for
// a requisite topology without this node, it is ResourceExhausted. A pushed
// snapshot is usable everywhere and has none.
//
// size_bytes, the restore size (the least size of a volume restored from
// the snapshot), is the bytes of file content in the committed layer: a
// restored volume shows the layer as a read-only lower, which its upper's
// limit does not count, but rewriting every file it holds would copy it
// all up. An empty layer's is 0, CSI's "unspecified".
//
// DeleteSnapshot removes the record and the blob links; an unknown or
// malformed id is OK. The committed layer stays in the store for its
// garbage collection, which keeps it while any volume's chain names it (a
// volume restored from the snapshot). A pushed image is not deleted from
// the registry: it may be in use as an image elsewhere; the registry's
// retention policy removes it.
//
// ListSnapshots lists this node's snapshots, by snapshot_id or
// source_volume_id or all, ordered by id; starting_token is the id of the
// last entry of the previous page, and a token that is not a snapshot id
// is Aborted.
package snapshot
