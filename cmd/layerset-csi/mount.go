package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/quota"
)

func newMountCommand() *cobra.Command {
	var (
		sf       storeFlags
		file     string
		readOnly bool
		volumeID string
		size     string
	)
	cmd := &cobra.Command{
		Use:   "mount --layerset FILE [--read-only] [--volume-id ID] [--size 10Gi] TARGET",
		Short: "Compose a LayerSet's chain and init layer and mount it at TARGET",
		Long: "Compose the chain of every spec.layers entry of the LayerSet in FILE, in order, plus its init\n" +
			"layer, and mount it at TARGET. Entries that name another LayerSet are looked up among the\n" +
			"LayerSet files in FILE's directory. Without --volume-id the id is derived from TARGET, so the\n" +
			"same TARGET finds the same writable upper again. --size limits what the upper may hold (see\n" +
			"--quota); a larger --size on a later mount of the same volume raises the limit.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			target, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if file == "" {
				return fmt.Errorf("--layerset FILE is required")
			}
			cat, err := catalog.NewFile(file, sf.sourceOptions())
			if err != nil {
				return err
			}
			if volumeID == "" {
				volumeID = targetVolumeID(target)
			}
			bytes, err := parseSize(size)
			if err != nil {
				return err
			}
			s, err := sf.open(ctx)
			if err != nil {
				return err
			}
			node, _ := os.Hostname()
			a := assemble.New(assemble.Options{Store: s, Catalog: cat, NodeName: node})
			vol, err := a.Mount(ctx, assemble.Request{
				VolumeID: volumeID, LayerSet: cat.Name(), Target: target, ReadOnly: readOnly, Size: bytes,
			})
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(cmd.OutOrStdout(), "mounted LayerSet %q (%d layers + init) at %s as volume %s; writes go to %s\n",
				cat.Name(), len(vol.Layers), vol.Target, vol.ID, vol.UpperDir()); err != nil {
				return fmt.Errorf("volume %s is mounted at %s, but reporting it failed: %w", vol.ID, vol.Target, err)
			}
			return nil
		},
	}
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&file, "layerset", "", "LayerSet YAML file (the CRD's schema)")
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "mount without a writable upper")
	cmd.Flags().StringVar(&volumeID, "volume-id", "", "volume id (default: derived from TARGET)")
	cmd.Flags().StringVar(&size, "size", "", "limit of the writable upper, e.g. 10Gi (default: the LayerSet's spec.defaultSize, else none)")
	return cmd
}

// parseSize reads --size: empty for none.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Value() < quota.MinLimit || q.Value() > quota.MaxLimit {
		return 0, fmt.Errorf("--size %q: want a quantity from 1Mi to 1Pi, such as 10Gi", s)
	}
	return q.Value(), nil
}

func newUnmountCommand() *cobra.Command {
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "unmount TARGET",
		Short: "Unmount the volume at TARGET and remove its private directories, upper included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			vols, err := s.Volumes()
			if err != nil {
				return err
			}
			for _, v := range vols {
				if v.Target == target {
					if err := s.Unmount(cmd.Context(), v.ID, layers.RemoveUpper); err != nil {
						return err
					}
					_, err := fmt.Fprintf(cmd.OutOrStdout(), "unmounted volume %s from %s\n", v.ID, target)
					return err
				}
			}
			return fmt.Errorf("no volume of the store %s is mounted at %s", s.Dir(), target)
		},
	}
	sf.register(cmd.Flags())
	return cmd
}

// targetVolumeID derives a stable volume id from a mount target.
func targetVolumeID(target string) string {
	sum := sha256.Sum256([]byte(target))
	return "cli-" + hex.EncodeToString(sum[:8])
}
