package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
)

func newLayersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "layers", Short: "Manage the node's layer store"}
	cmd.AddCommand(newPullCommand(), newListCommand(), newGCCommand())
	return cmd
}

func newPullCommand() *cobra.Command {
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Fetch every layer of an image (host/repo:tag, host/repo@sha256:..., oci:PATH[:TAG]) into the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			img, err := s.Pull(cmd.Context(), args[0], sf.sourceOptions())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: %d layers\n", img.Pinned, len(img.Layers))
			return err
		},
	}
	sf.register(cmd.Flags())
	return cmd
}

func newListCommand() *cobra.Command {
	var sf storeFlags
	var output string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List stored layers with digest, short id, size, users and last use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("unknown output format %q: use -o json or nothing", output)
			}
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			ls, err := s.Layers(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(ls)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
			if _, err := fmt.Fprintln(w, "DIFF ID\tSHORT ID\tSIZE\tUSERS\tLAST USED"); err != nil {
				return err
			}
			for _, l := range ls {
				if _, err := fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", l.DiffID, l.LinkID,
					resource.NewQuantity(l.Size, resource.BinarySI), l.Users, l.LastUsed.Format(time.RFC3339)); err != nil {
					return err
				}
			}
			return w.Flush()
		},
	}
	sf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func newGCCommand() *cobra.Command {
	var sf storeFlags
	var maxBytes string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove unused layers, least recently used first, until the store fits --max-bytes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			budget, err := resource.ParseQuantity(maxBytes)
			if err != nil {
				return fmt.Errorf("--max-bytes %q: %w (use bytes or a quantity such as 10Gi)", maxBytes, err)
			}
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			res, err := s.GC(cmd.Context(), budget.Value(), nil)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "removed %d layers, freed %d bytes, %d bytes kept\n", len(res.Removed), res.FreedBytes, res.KeptBytes)
			return err
		},
	}
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&maxBytes, "max-bytes", "0", "byte budget for the store; 0 removes every unused layer")
	return cmd
}
