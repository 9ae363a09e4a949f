// Command image assembles the layerset-csi container image from binaries
// built beforehand, without a Docker engine: the same image the Dockerfile
// builds (the static binary as the entrypoint, the CA certificates registries
// need, OCI labels, no user database, no shell).
//
// It writes, under --out:
//
//	layerset-csi-OS-ARCH.tar   one docker-archive per platform, for
//	                           `ctr -n k8s.io images import` and `docker load`
//	oci/                       an OCI image layout holding the multi-platform
//	                           index, for crane, skopeo and registries
//
// With --tool, the image gets a second layer, below the binary's: host
// executables the node plugin runs (mkfs.ext4), each with the shared
// libraries and the loader it needs, at the paths Debian's loader looks in.
// --stage writes that layer as a directory instead, for the Dockerfile.
//
// Every input fixes the output: the same binaries, certificates, tools and
// flags give the same digests. hack/image.sh builds the binaries and runs this.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err == nil {
		err = run(opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// binaryFlags collects repeated --binary OS/ARCH[/VARIANT]=PATH flags.
type binaryFlags []Binary

func (b *binaryFlags) String() string { return fmt.Sprint(*b) }

func (b *binaryFlags) Set(v string) error {
	bin, err := parseBinary(v)
	if err != nil {
		return err
	}
	*b = append(*b, bin)
	return nil
}

// parseFlags parses the command line; usage goes to usage on errors.
func parseFlags(args []string, usage io.Writer) (Options, error) {
	var (
		opts     Options
		binaries binaryFlags
		created  string
	)
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Var(&binaries, "binary", "`OS/ARCH[/VARIANT]=PATH` of a static layerset-csi binary; repeat for each platform")
	fs.StringVar(&opts.CACertificates, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of the CAs registries are verified with")
	fs.StringVar(&opts.Repository, "repository", "ghcr.io/layerset/layerset-csi", "image repository the archives are tagged with")
	fs.StringVar(&opts.Version, "version", "", "image tag and org.opencontainers.image.version (required)")
	fs.StringVar(&opts.Revision, "revision", "", "source revision, org.opencontainers.image.revision")
	fs.StringVar(&created, "created", "0", "creation time in Unix seconds (SOURCE_DATE_EPOCH), for reproducible digests")
	fs.StringVar(&opts.Out, "out", "_output/image", "directory to write the archives and the OCI layout to")
	fs.Func("tool", "`PATH[=HOST_PATH]` of an executable shipped at PATH, with its shared libraries and loader; repeatable", func(v string) error {
		f, err := parseHostFile("--tool", v)
		if err != nil {
			return err
		}
		opts.Tools.Executables = append(opts.Tools.Executables, f)
		return nil
	})
	fs.Func("tool-file", "`PATH[=HOST_PATH]` of another file shipped at PATH, such as a tool's configuration; repeatable", func(v string) error {
		f, err := parseHostFile("--tool-file", v)
		if err != nil {
			return err
		}
		opts.Tools.Files = append(opts.Tools.Files, f)
		return nil
	})
	fs.Func("tool-link", "`PATH=TARGET`: a symlink shipped at PATH; repeatable", func(v string) error {
		p, target, ok := strings.Cut(v, "=")
		if !ok || p == "" || target == "" {
			return fmt.Errorf("want PATH=TARGET")
		}
		opts.Tools.Links = append(opts.Tools.Links, Link{Path: p, Target: target})
		return nil
	})
	fs.StringVar(&opts.Tools.Sysroot, "sysroot", "/", "directory the tools' host paths and libraries are looked up in, as if it were /")
	fs.StringVar(&opts.Stage, "stage", "", "write the tools' files into this new `DIR` instead of building images (the Dockerfile does)")
	fs.StringVar(&opts.StageArch, "arch", "", "with --stage: the GOARCH the tools are for")
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments %q: every input is a flag", fs.Args())
	}
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil || secs < 0 {
		return Options{}, fmt.Errorf("--created %q: want Unix seconds, e.g. $(git log -1 --format=%%ct)", created)
	}
	opts.Created = time.Unix(secs, 0).UTC()
	opts.Binaries = binaries
	return opts, nil
}

// parseHostFile parses PATH[=HOST_PATH]; the host path defaults to PATH.
func parseHostFile(flagName, v string) (HostFile, error) {
	p, host, ok := strings.Cut(v, "=")
	if !ok {
		host = p
	}
	if p == "" || host == "" {
		return HostFile{}, fmt.Errorf("%s %q: want PATH[=HOST_PATH]", flagName, v)
	}
	return HostFile{Path: p, Host: host}, nil
}

// parseBinary parses OS/ARCH[/VARIANT]=PATH.
func parseBinary(v string) (Binary, error) {
	plat, path, ok := strings.Cut(v, "=")
	if !ok || path == "" {
		return Binary{}, fmt.Errorf("--binary %q: want OS/ARCH[/VARIANT]=PATH", v)
	}
	parts := strings.Split(plat, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Binary{}, fmt.Errorf("--binary %q: platform %q is not OS/ARCH[/VARIANT]", v, plat)
	}
	b := Binary{OS: parts[0], Arch: parts[1], Path: path}
	if len(parts) == 3 {
		b.Variant = parts[2]
	}
	return b, nil
}
