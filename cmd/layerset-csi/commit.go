package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

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
			dst, err := source.ParseDestination(args[0], sf.sourceOptions())
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
				written, err = dst.Write(ctx, img)
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
