package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

func TestClassifyStore(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("publish volume v: %w", err) }
	for _, tt := range []struct {
		err  error
		want codes.Code
	}{
		{wrap(layers.ErrTooManyLayers), codes.FailedPrecondition},
		{wrap(layers.ErrDigestMismatch), codes.FailedPrecondition},
		{wrap(layers.ErrInvalid), codes.FailedPrecondition},
		{wrap(layers.ErrVolumeNotFound), codes.NotFound},
		{wrap(layers.ErrLayerMissing), codes.Unavailable},
		{wrap(layers.ErrCorruptLayer), codes.FailedPrecondition},
		{wrap(layers.ErrLayerTooLarge), codes.ResourceExhausted},
		// A layer over the node's budget that the extractor refused by
		// the budget's MaxTotalSize wraps both: the node's limit wins.
		{wrap(fmt.Errorf("%w: limit: %w", layers.ErrLayerTooLarge, archive.ErrLimit)), codes.ResourceExhausted},
		{wrap(archive.ErrLimit), codes.FailedPrecondition},
		{wrap(archive.ErrInvalidName), codes.FailedPrecondition},
		{wrap(archive.ErrInvalidHeader), codes.FailedPrecondition},
		{wrap(archive.ErrUnsafePath), codes.FailedPrecondition},
		{wrap(archive.ErrLinkTarget), codes.FailedPrecondition},
		{wrap(archive.ErrOverlayXattr), codes.FailedPrecondition},
		{errors.New("something else"), codes.Internal},
	} {
		if got := rpc.Code(tt.err, classifyStore); got != tt.want {
			t.Errorf("Code(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestImportErrorStatus pulls broken and oversized layers into a real store
// and checks the status a node call would return: the code, and the reason
// kept in the message.
func TestImportErrorStatus(t *testing.T) {
	bomb := testimage.File("zeros", strings.Repeat("\x00", 64<<20))
	for _, tt := range []struct {
		name    string
		entries []testimage.Entry
		diffID  bool // the config names a wrong diff_id
		want    codes.Code
		msg     []string
	}{
		{"gzip bomb over the cache budget", []testimage.Entry{bomb}, false, codes.ResourceExhausted,
			[]string{"layer too large", "the limit is 8388608 bytes (the cache budget)"}},
		{"escaping name", []testimage.Entry{testimage.File("../escape", "x")}, false, codes.FailedPrecondition,
			[]string{"invalid entry name", "../escape"}},
		{"hardlink out of the layer", []testimage.Entry{testimage.Hardlink("h", "/etc/passwd")}, false, codes.FailedPrecondition,
			[]string{"invalid hardlink target"}},
		{"wrong diff_id", []testimage.Entry{testimage.File("f", "x")}, true, codes.FailedPrecondition,
			[]string{"digest mismatch", "the image config says sha256:abab"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			layer, err := testimage.Layer(tt.entries, testimage.Gzip)
			if err != nil {
				t.Fatal(err)
			}
			img, err := testimage.Image(layer)
			if err != nil {
				t.Fatal(err)
			}
			if tt.diffID {
				cfg, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				cfg = cfg.DeepCopy()
				cfg.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
				if img, err = mutate.ConfigFile(img, cfg); err != nil {
					t.Fatal(err)
				}
			}
			reg := testimage.NewRegistry(t)
			ref := reg.Push(t, "bad/img:v1", img)
			s, err := layers.Open(context.Background(), layers.Options{Root: t.TempDir(), NoSync: true, MaxLayerBytes: 8 << 20})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
			if err == nil {
				t.Fatal("pull succeeded")
			}
			st, _ := status.FromError(rpc.Status(context.Background(), err, classifyStore))
			if st.Code() != tt.want {
				t.Errorf("code %v, want %v: %v", st.Code(), tt.want, err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(st.Message(), m) {
					t.Errorf("message %q does not say %q", st.Message(), m)
				}
			}
		})
	}
}
