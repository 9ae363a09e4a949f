package snapshot

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc/codes"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// A snapshot with a repository is pushed, with the class's secret, as
// the image of the chain plus the committed layer; its id is the image.
func TestPushSnapshot(t *testing.T) {
	e := newEnv(t)
	push := testimage.NewRegistry(t, testimage.WithBasicAuth("snapper", "s3cret"))
	e.opts.Insecure = append(e.opts.Insecure, push.Host)
	e.restart() // the node lists the push registry as insecure, as --insecure-registry would
	staging := e.stage("pvc-1", false)
	write(t, staging)
	repo := push.Host + "/snapshots/pvc-1"
	params := map[string]string{ParamRepository: repo}

	_, err := e.create("nightly-1", "pvc-1", params, nil)
	wantCode(t, err, codes.FailedPrecondition, "a push without credentials to a registry that wants them")
	_, err = e.create("nightly-1", "pvc-1", params, map[string]string{SecretUsername: "snapper", SecretPassword: "wrong"})
	wantCode(t, err, codes.FailedPrecondition, "a push with the wrong password")

	snap := e.mustCreate("nightly-1", "pvc-1", params, map[string]string{SecretUsername: "snapper", SecretPassword: "s3cret"})
	rec := e.record("nightly-1")
	if !strings.HasPrefix(snap.GetSnapshotId(), repo+"@sha256:") || rec.Image != snap.GetSnapshotId() || rec.Repository != repo {
		t.Errorf("pushed snapshot id %q (record image %q): want %s@sha256:...", snap.GetSnapshotId(), rec.Image, repo)
	}
	if len(snap.GetAccessibleTopology()) != 0 {
		t.Errorf("a pushed snapshot is usable everywhere; got topology %v", snap.GetAccessibleTopology())
	}
	// Asked again, with the same secret or none: the same snapshot.
	if again := e.mustCreate("nightly-1", "pvc-1", params, nil); again.GetSnapshotId() != snap.GetSnapshotId() {
		t.Errorf("asked again: %s, want %s", again.GetSnapshotId(), snap.GetSnapshotId())
	}
	_, err = e.create("nightly-1", "pvc-1", nil, nil)
	wantCode(t, err, codes.AlreadyExists, "the same name without the repository")

	auth := remote.WithAuth(&authn.Basic{Username: "snapper", Password: "s3cret"})
	ref, err := name.NewDigest(snap.GetSnapshotId(), name.Insecure)
	must(t, err)
	img, err := remote.Image(ref, auth)
	must(t, err)
	cfg, err := img.ConfigFile()
	must(t, err)
	if want := []v1.Hash{e.baseDiff, mustHash(t, rec.Layer.DiffID)}; len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.DiffIDs[0] != want[0] || cfg.RootFS.DiffIDs[1] != want[1] {
		t.Errorf("image diff_ids %v, want the chain %v", cfg.RootFS.DiffIDs, want)
	}
	if !cfg.Created.Equal(rec.Created.Truncate(time.Second)) && !cfg.Created.Equal(rec.Created) {
		t.Errorf("image created %v, snapshot %v", cfg.Created.Time, rec.Created)
	}
	ls, err := img.Layers()
	must(t, err)
	files := tarFiles(t, ls[len(ls)-1])
	if files["data/model.bin"] != "weights v1\n" || files["etc/os-release"] != "changed by the pod\n" {
		t.Errorf("the pushed top layer holds %v", files)
	}
	if _, ok := files["etc/volume"]; ok {
		t.Error("the pushed layer holds the init file")
	}
	// Tagged with the snapshot's name too.
	tag, err := name.NewTag(repo+":nightly-1", name.Insecure)
	must(t, err)
	if d, err := remote.Head(tag, auth); err != nil || d.Digest.String() != ref.DigestStr() {
		t.Errorf("tag nightly-1: %v, %v; want %s", d, err, ref.DigestStr())
	}

	// A .dockerconfigjson secret does as well; the name makes the image
	// a different one.
	other := e.mustCreate("nightly-2", "pvc-1", params, map[string]string{SecretDockerConfigJSON: string(push.DockerConfigJSON())})
	if other.GetSnapshotId() == snap.GetSnapshotId() || !strings.HasPrefix(other.GetSnapshotId(), repo+"@sha256:") {
		t.Errorf("second pushed snapshot %s, first %s: want another image of %s", other.GetSnapshotId(), snap.GetSnapshotId(), repo)
	}

	// Deleting it forgets it here and leaves the image in the registry.
	_, err = e.ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()})
	must(t, err)
	if got := e.ids(&csi.ListSnapshotsRequest{SnapshotId: snap.GetSnapshotId()}); len(got) != 0 {
		t.Errorf("deleted snapshot listed: %q", got)
	}
	if _, err := remote.Head(ref, auth); err != nil {
		t.Errorf("the pushed image is gone from the registry: %v", err)
	}
}

// New removes what an interrupted snapshot left: blob folders with no
// record and private volumes.
func TestRestartCleansUp(t *testing.T) {
	e := newEnv(t)
	stray := e.snaps.records.blobDir("interrupted")
	must(t, os.MkdirAll(stray, 0o700))
	must(t, os.WriteFile(filepath.Join(stray, strings.Repeat("a", 64)), []byte("partial"), 0o600))
	e.lookup["pvc-new"] = VolumeInfo{Exists: true, LayerSet: testLayerSet}
	e.mustCreate("kept", "pvc-new", nil, nil)
	// A private volume a crash left mounted.
	id := tempPrefix + "crashed"
	_, err := e.store.Mount(context.Background(), e.tempSpec(id))
	must(t, err)

	e.restart()
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("blob folder without a record left: %v", err)
	}
	if _, err := os.Stat(e.snaps.records.blobDir("kept")); err != nil {
		t.Errorf("a snapshot's blobs removed: %v", err)
	}
	vols, err := e.store.Volumes()
	must(t, err)
	for _, v := range vols {
		t.Errorf("volume %s left in the store", v.ID)
	}
	if _, err := os.Stat(e.snaps.tempTarget(id)); !os.IsNotExist(err) {
		t.Errorf("the private volume's mount point is left: %v", err)
	}
	if got := e.ids(&csi.ListSnapshotsRequest{}); len(got) != 1 {
		t.Errorf("after the restart %q listed, want the one snapshot", got)
	}
}

func (e *env) tempSpec(id string) layers.VolumeSpec {
	return layers.VolumeSpec{ID: id, Layers: []v1.Hash{e.baseDiff}, Target: e.snaps.tempTarget(id)}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	must(t, err)
	return h
}

// tarFiles reads the regular files of a layer.
func tarFiles(t *testing.T, l v1.Layer) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	must(t, err)
	defer func() { check(t, rc.Close()) }()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		must(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			must(t, err)
			files[strings.TrimPrefix(h.Name, "./")] = string(b)
		}
	}
}
