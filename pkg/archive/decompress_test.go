package archive

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gzipped(t *testing.T, parts ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range parts { // several parts make a multi-member stream
		zw := gzip.NewWriter(&b)
		if _, err := zw.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func zstded(t *testing.T, p []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecompress(t *testing.T) {
	payload := []byte(strings.Repeat("layer tar bytes ", 10000))
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		openErr bool // Decompress itself fails
		readErr error
	}{
		{name: "plain", in: payload, want: payload},
		{name: "empty", in: nil, want: nil},
		{name: "shorter than any magic", in: []byte{0x1f}, want: []byte{0x1f}},
		{name: "gzip", in: gzipped(t, payload), want: payload},
		{name: "gzip, two members", in: gzipped(t, payload[:100], payload[100:]), want: payload},
		{name: "zstd", in: zstded(t, payload), want: payload},
		{name: "gzip truncated in the header", in: gzipped(t, payload)[:5], openErr: true},
		{name: "gzip truncated in the data", in: gzipped(t, payload)[:40], readErr: io.ErrUnexpectedEOF},
		{name: "zstd truncated", in: zstded(t, payload)[:30], readErr: io.ErrUnexpectedEOF},
		{name: "zstd window over the limit", in: zstded(t, payload, zstd.WithWindowSize(1<<29)), readErr: zstd.ErrWindowSizeExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decompress(bytes.NewReader(tc.in))
			if tc.openErr {
				if err == nil {
					_ = r.Close()
					t.Fatal("Decompress succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			defer func() {
				// After a failed read, gzip's Close returns that error again.
				if err := r.Close(); err != nil && tc.readErr == nil {
					t.Error(err)
				}
			}()
			got, err := io.ReadAll(r)
			if tc.readErr != nil {
				if !errors.Is(err, tc.readErr) {
					t.Fatalf("reading: %v, want %v", err, tc.readErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}
