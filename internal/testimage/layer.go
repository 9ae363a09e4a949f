package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Compression selects how Layer compresses the tarball and so its media type.
type Compression int

// The compressions Layer knows, each commented with its media type.
const (
	Gzip Compression = iota // application/vnd.oci.image.layer.v1.tar+gzip
	Zstd                    // application/vnd.oci.image.layer.v1.tar+zstd
	None                    // application/vnd.oci.image.layer.v1.tar
)

func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case None:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Layer builds a layer holding entries in the given order.
func Layer(entries []Entry, c Compression) (v1.Layer, error) {
	raw, err := Tar(entries)
	if err != nil {
		return nil, err
	}
	var (
		blob []byte
		mt   types.MediaType
	)
	switch c {
	case Gzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf) // zero header: no name, no mtime
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		blob, mt = buf.Bytes(), types.OCILayer
	case Zstd:
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		blob, mt = zw.EncodeAll(raw, nil), types.OCILayerZStd
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case None:
		blob, mt = raw, types.OCIUncompressedLayer
	default:
		return nil, fmt.Errorf("unknown compression %v", c)
	}
	return &layer{blob: blob, tar: raw, mediaType: mt, digest: sha(blob), diffID: sha(raw)}, nil
}

// Tar returns the uncompressed tarball Layer would compress.
func Tar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if e.Body != "" && e.Type != tar.TypeReg {
			return nil, fmt.Errorf("entry %q: only regular files (type %q) have a body, this one has type %q", e.Name, tar.TypeReg, e.Type)
		}
		if err := tw.WriteHeader(e.header()); err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.Name, err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WithMediaType returns l declaring media type mt instead of its own, to
// build Docker-typed images or layers a consumer must refuse. The bytes are
// unchanged, so mt should describe them truthfully unless a test means
// otherwise.
func WithMediaType(l v1.Layer, mt types.MediaType) v1.Layer {
	return &retyped{Layer: l, mediaType: mt}
}

type retyped struct {
	v1.Layer
	mediaType types.MediaType
}

func (r *retyped) MediaType() (types.MediaType, error) { return r.mediaType, nil }

// layer keeps both forms in memory; test layers are small.
type layer struct {
	blob, tar      []byte
	mediaType      types.MediaType
	digest, diffID v1.Hash
}

func (l *layer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *layer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *layer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *layer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}

func sha(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
