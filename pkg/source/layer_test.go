package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func TestVerifier(t *testing.T) {
	blob := []byte("the layer bytes")
	good := v1.Descriptor{Digest: sha256Hash(blob), Size: int64(len(blob))}
	tampered := append([]byte{}, blob...)
	tampered[3] ^= 1
	for _, tc := range []struct {
		name    string
		content []byte
		desc    v1.Descriptor
		checked bool
		wrap    func(io.Reader) io.Reader
		err     string // "" = reads to EOF
	}{
		{name: "match", content: blob, desc: good},
		{name: "match, one byte at a time", content: blob, desc: good, wrap: iotest.OneByteReader},
		{name: "match, data with EOF", content: blob, desc: good, wrap: iotest.DataErrReader},
		{name: "tampered", content: tampered, desc: good, err: "has digest sha256:" + sha256Hash(tampered).Hex},
		{name: "short", content: blob[:5], desc: good, err: "ended after 5 bytes; its descriptor declares 15"},
		{name: "long", content: append(blob, 'x'), desc: good, err: "longer than the 15 bytes"},
		{name: "long, checked below", content: append(blob, 'x'), desc: good, checked: true, err: "longer than the 15 bytes"},
		{name: "short, checked below", content: blob[:5], desc: good, checked: true, err: "ended after 5 bytes"},
		// The reader beneath promised to check the digest: not hashing
		// again is the point, so tampering must pass through here.
		{name: "tampered, checked below", content: tampered, desc: good, checked: true},
		{name: "read error", content: blob, desc: good, wrap: func(io.Reader) io.Reader { return iotest.ErrReader(errors.New("connection reset")) }, err: "connection reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.content)
			if tc.wrap != nil {
				r = tc.wrap(r)
			}
			rc, err := newVerifier(io.NopCloser(r), tc.desc, tc.checked)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if tc.err == "" {
				if err != nil || !bytes.Equal(got, tc.content) {
					t.Fatalf("read %q, %v; want %q", got, err, tc.content)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if int64(len(got)) > tc.desc.Size {
				t.Errorf("delivered %d bytes past the declared size %d", len(got), tc.desc.Size)
			}
			// The failure is sticky: a caller retrying Read must not see EOF.
			if _, again := rc.Read(make([]byte, 1)); again == nil || errors.Is(again, io.EOF) {
				t.Errorf("read after failure returned %v", again)
			}
		})
	}
}

func TestVerifierUnknownAlgorithm(t *testing.T) {
	_, err := newVerifier(io.NopCloser(strings.NewReader("")), v1.Descriptor{Digest: v1.Hash{Algorithm: "md5", Hex: "00"}}, false)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error %v, want ErrUnsupported", err)
	}
}

func TestOpenZeroLayer(t *testing.T) {
	if _, err := (Layer{}).Open(context.Background()); err == nil {
		t.Fatal("Open of a Layer not from Resolve succeeded")
	}
}

// BenchmarkVerifier measures what checking costs on top of reading a blob
// in 32 KiB chunks: "checked" trusts the reader beneath with the digest
// (remote blobs), "hashed" hashes here (layout blobs). Ratios are against
// the same read loop without a verifier.
func BenchmarkVerifier(b *testing.B) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	d := v1.Descriptor{Digest: sha256Hash(blob), Size: int64(len(blob))}
	copyOnce := func(checked *bool) {
		var r io.Reader = struct{ io.Reader }{bytes.NewReader(blob)} // no WriterTo shortcut
		if checked != nil {
			rc, err := newVerifier(io.NopCloser(r), d, *checked)
			if err != nil {
				b.Fatal(err)
			}
			r = rc
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
	measure := func(checked *bool) float64 {
		start := time.Now()
		for range 8 {
			copyOnce(checked)
		}
		return float64(time.Since(start))
	}
	yes, no := true, false
	var base, withChecked, withHash float64
	for b.Loop() {
		base += measure(nil)
		withChecked += measure(&yes)
		withHash += measure(&no)
	}
	b.ReportMetric(withChecked/base, "checked/copy")
	b.ReportMetric(withHash/base, "hashed/copy")
}
