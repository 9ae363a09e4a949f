// Command layerset-csi is the layerset-csi binary: the CSI node and
// controller services, and a standalone front end to the layer store.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/layerset/layerset-csi/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// controller-runtime logs through klog too, so its errors (a forbidden
	// watch, a lost lease) reach the same log as ours.
	ctrl.SetLogger(klog.NewKlogr())
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	klog.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "layerset-csi:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "layerset-csi",
		Short:         "Compose pod volumes from shared, cached read-only layers with overlayfs",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get(),
	}
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	root.PersistentFlags().AddGoFlagSet(klogFlags)
	root.AddCommand(newLayersCommand(), newMountCommand(), newUnmountCommand(), newCommitCommand(), newNodeCommand(), newControllerCommand())
	return root
}
