package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

// refNameAnnotation tags a manifest in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

func newCommitCommand() *cobra.Command {
	var (
		sf          storeFlags
		volumeID    string
		compression string
		fixedMtime  string
		author      string
		message     string
	)
	cmd := &cobra.Command{
		Use:   "commit --volume-id ID [--compression zstd|gzip] [--fixed-mtime[=TIME]] REF",
		Short: "Pack what a volume's pod wrote into a layer and write the image of its chain plus that layer to REF",
		Long: "Pack the writable upper of volume ID (not its init files) into a new layer, store it in the\n" +
			"node's layer store as a shared layer, and write an image to REF: the volume's chain, each\n" +
			"layer its original blob, then the new one, with a config listing their diff_ids and history.\n" +
			"REF is oci:PATH:TAG (an OCI image layout, made if missing; TAG replaced) or a registry\n" +
			"reference host/repo:tag, reached with the credentials pulls use. The chain's pulled layers\n" +
			"are fetched again, by digest, from the images they came from. The volume may be in use:\n" +
			"each file is taken as of one moment, never half-written (see archive.Pack).\n" +
			"--fixed-mtime gives every entry and the image one time (default 1970-01-01T00:00:00Z), so\n" +
			"equal writes make an equal image.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if volumeID == "" {
				return fmt.Errorf("--volume-id ID is required")
			}
			comp, err := layers.ParseCompression(compression)
			if err != nil {
				return fmt.Errorf("--compression: %w", err)
			}
			var fixed *time.Time
			if cmd.Flags().Changed("fixed-mtime") {
				t, err := time.Parse(time.RFC3339, fixedMtime)
				if err != nil {
					return fmt.Errorf("--fixed-mtime %q: want an RFC 3339 time such as 2024-01-01T00:00:00Z: %w", fixedMtime, err)
				}
				t = t.UTC()
				fixed = &t
			}
			dst, err := parseDestination(args[0], sf.insecure)
			if err != nil {
				return err
			}
			s, err := sf.open(ctx)
			if err != nil {
				return err
			}
			res, err := s.Commit(ctx, volumeID, layers.CommitOptions{Compression: comp, FixedMtime: fixed,
				Warn: func(name, reason string) { _, _ = fmt.Fprintf(cmd.ErrOrStderr(), "left out %s: %s\n", name, reason) }})
			if err != nil {
				return err
			}
			opts := layers.ImageOptions{Author: author, Comment: message, Source: sf.sourceOptions()}
			if fixed != nil {
				opts.Created = *fixed
			}
			var written string
			// Held, garbage collection leaves the layers while their blobs
			// are read; the new layer has no user to keep it otherwise.
			err = s.Hold(func() error {
				if !s.HasLayer(res.Layer.DiffID) {
					return fmt.Errorf("garbage collection removed the layer before its image was written; commit again")
				}
				img, err := s.CommitImage(ctx, res, opts)
				if err != nil {
					return err
				}
				written, err = dst.write(ctx, img, sf.sourceOptions())
				return err
			})
			if err != nil {
				return fmt.Errorf("volume %s is committed as layer %s, but writing its image to %s: %w", volumeID, res.Layer.DiffID, args[0], err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "committed volume %s as layer %s (%s, %d bytes, %d entries) on %d layers; wrote %s\n",
				volumeID, res.Layer.DiffID, comp, res.Layer.Size, res.Pack.Entries, len(res.Chain), written)
			return err
		},
	}
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&volumeID, "volume-id", "", "the volume to commit")
	cmd.Flags().StringVar(&compression, "compression", string(layers.Zstd), "compression of the new layer: zstd or gzip")
	cmd.Flags().StringVar(&fixedMtime, "fixed-mtime", "", "one modification time for every entry and the image's creation, RFC 3339")
	cmd.Flags().Lookup("fixed-mtime").NoOptDefVal = "1970-01-01T00:00:00Z"
	cmd.Flags().StringVar(&author, "author", "", "the image's author")
	cmd.Flags().StringVarP(&message, "message", "m", "", "the new layer's history comment")
	return cmd
}

// destination is where commit writes its image: an OCI layout's tag or a
// registry reference.
type destination struct {
	layout, tag string // oci:PATH:TAG, PATH absolute
	remote      name.Tag
	insecure    map[string]bool
}

// parseDestination reads REF: oci:PATH:TAG, or a fully qualified
// registry reference host/repo:tag (plain HTTP only for a host listed in
// insecure, as for pulls).
func parseDestination(ref string, insecure []string) (destination, error) {
	d := destination{insecure: map[string]bool{}}
	for _, h := range insecure {
		d.insecure[strings.ToLower(h)] = true
	}
	if rest, ok := strings.CutPrefix(ref, source.LayoutPrefix); ok {
		i := strings.LastIndexByte(rest, ':')
		if i <= strings.LastIndexByte(rest, '/') || i == len(rest)-1 {
			return d, fmt.Errorf("image reference %q: name the tag to write, oci:PATH:TAG", ref)
		}
		path, err := filepath.Abs(rest[:i])
		if err != nil {
			return d, err
		}
		d.layout, d.tag = path, rest[i+1:]
		return d, nil
	}
	opts := []name.Option{name.StrictValidation}
	tag, err := name.NewTag(ref, opts...)
	if err != nil {
		return d, fmt.Errorf("image reference %q: %w; want oci:PATH:TAG or REGISTRY/REPOSITORY:TAG", ref, err)
	}
	if d.insecure[strings.ToLower(tag.RegistryStr())] {
		if tag, err = name.NewTag(ref, append(opts, name.Insecure)...); err != nil {
			return d, err
		}
	}
	d.remote = tag
	return d, nil
}

// write writes img and returns its digest-pinned reference.
func (d destination) write(ctx context.Context, img v1.Image, opts source.Options) (string, error) {
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	if d.layout == "" {
		kc := opts.Keychain
		if kc == nil {
			kc = authn.DefaultKeychain
		}
		transport := &tlsUnlessInsecure{next: remote.DefaultTransport, insecure: d.insecure}
		if err := remote.Write(d.remote, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(transport)); err != nil {
			return "", err
		}
		return d.remote.Context().Digest(digest.String()).String(), nil
	}
	p, err := layout.FromPath(d.layout)
	if err != nil {
		// Only a missing or empty directory becomes a new layout.
		if entries, rerr := os.ReadDir(d.layout); rerr == nil && len(entries) > 0 {
			return "", fmt.Errorf("%s holds files but is not an OCI image layout: %w", d.layout, err)
		} else if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return "", rerr
		}
		if p, err = layout.Write(d.layout, empty.Index); err != nil {
			return "", err
		}
	}
	tagged := map[string]string{refNameAnnotation: d.tag}
	if err := p.ReplaceImage(img, match.Annotation(refNameAnnotation, d.tag), layout.WithAnnotations(tagged)); err != nil {
		return "", err
	}
	return source.LayoutPrefix + d.layout + "@" + digest.String(), nil
}

// tlsUnlessInsecure sends every plain-HTTP request over TLS unless its host
// is listed with --insecure-registry: go-containerregistry falls back to
// HTTP by itself for localhost and private addresses, and a push must not
// leave over plain HTTP because a TLS attempt failed. (pkg/source guards
// pulls the same way.)
type tlsUnlessInsecure struct {
	next     http.RoundTripper
	insecure map[string]bool
}

func (t *tlsUnlessInsecure) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || t.insecure[strings.ToLower(req.URL.Host)] {
		return t.next.RoundTrip(req)
	}
	up := req.Clone(req.Context())
	up.URL.Scheme = "https"
	resp, err := t.next.RoundTrip(up)
	if err != nil {
		return nil, fmt.Errorf("sent over TLS because %s is not listed with --insecure-registry: %w", req.URL.Host, err)
	}
	return resp, nil
}
