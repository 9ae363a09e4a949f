package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// otherMachineError is an ELF file built for another architecture.
type otherMachineError struct{ got elf.Machine }

func (e otherMachineError) Error() string { return "built for " + e.got.String() }

// toolFiles returns the files of the tools layer for arch: each executable
// at its path, the shared libraries it needs (DT_NEEDED, recursively) at the
// paths Debian's loader searches without an ld.so.cache (the image has
// none), the loader at the path the executables name (PT_INTERP), and the
// other files and links. Paths in the image are the paths looked up, not
// where merged-/usr symlinks lead on the host: /lib/x86_64-linux-gnu/libc.so.6,
// /lib64/ld-linux-x86-64.so.2.
func toolFiles(t Tools, arch string) ([]file, error) {
	if t.empty() {
		return nil, nil
	}
	r, err := newResolver(t.Sysroot, arch)
	if err != nil {
		return nil, err
	}
	type need struct{ name, by string }
	var queue []need
	loaders := map[string]string{} // PT_INTERP -> an executable naming it
	for _, x := range t.Executables {
		host, err := resolveIn(r.sysroot, x.Host)
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w (install the package that has it)", x.Host, err)
		}
		deps, err := r.readELF(host, true)
		if other := (otherMachineError{}); errors.As(err, &other) {
			return nil, fmt.Errorf("tool %s is built for %s, not for linux/%s (%s): hack/image can only ship tools for the build machine's "+
				"architecture; build a linux/%s image with the Dockerfile (docker buildx build --platform linux/%s)", x.Host, other.got, arch, r.machine, arch, arch)
		}
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w", x.Host, err)
		}
		if err := r.put(x.Path, host); err != nil {
			return nil, err
		}
		for _, n := range deps.needed {
			queue = append(queue, need{n, x.Host})
		}
		if deps.interp != "" {
			loaders[deps.interp] = x.Host
		}
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n.name] {
			continue
		}
		seen[n.name] = true
		needed, err := r.library(n.name, n.by)
		if err != nil {
			return nil, err
		}
		for _, m := range needed {
			queue = append(queue, need{m, n.name})
		}
	}
	for _, p := range sortedKeys(loaders) {
		if err := r.loader(p, loaders[p]); err != nil {
			return nil, err
		}
	}
	for _, f := range t.Files {
		host, err := resolveIn(r.sysroot, f.Host)
		if err != nil {
			return nil, fmt.Errorf("tool file %s: %w", f.Host, err)
		}
		if err := r.put(f.Path, host); err != nil {
			return nil, err
		}
	}
	for _, l := range t.Links {
		if err := r.link(l.Path, l.Target); err != nil {
			return nil, err
		}
	}
	return r.list(), nil
}

// resolver collects the tools layer of one architecture.
type resolver struct {
	sysroot string
	arch    string
	machine elf.Machine
	// dirs are the library directories, searched in order.
	dirs []string
	// files are the layer's entries by path in the image.
	files map[string]file
	// shipped maps a host file to the image path it is shipped at.
	shipped map[string]string
}

func newResolver(sysroot, arch string) (*resolver, error) {
	machine, ok := elfMachine(arch)
	triplet, ok2 := debianTriplet(arch)
	if !ok || !ok2 {
		return nil, fmt.Errorf("tools for architecture %q: want one of amd64, arm64, arm, 386, ppc64le, s390x, riscv64", arch)
	}
	if sysroot == "" {
		sysroot = "/"
	}
	return &resolver{
		sysroot: sysroot,
		arch:    arch,
		machine: machine,
		// Debian's loader's built-in directories (multiarch first), which it
		// searches when there is no /etc/ld.so.cache.
		dirs:    []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib", "/usr/lib"},
		files:   map[string]file{},
		shipped: map[string]string{},
	}, nil
}

// elfDeps is what an ELF file asks of the loader.
type elfDeps struct {
	interp string   // PT_INTERP, "" for a static executable
	needed []string // DT_NEEDED
}

// readELF checks that host is an ELF file for r's machine and returns what
// it needs; an otherMachineError when it is built for another architecture.
func (r *resolver) readELF(host string, executable bool) (deps elfDeps, err error) {
	f, err := elf.Open(host)
	if err != nil {
		return elfDeps{}, fmt.Errorf("%s is not an ELF file: %w", host, err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	if f.Machine != r.machine {
		return elfDeps{}, otherMachineError{f.Machine}
	}
	if executable && f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return elfDeps{}, fmt.Errorf("%s is an ELF %s, not an executable", host, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return elfDeps{}, fmt.Errorf("%s: PT_INTERP: %w", host, err)
		}
		deps.interp = string(bytes.TrimRight(b, "\x00"))
	}
	if f.Section(".dynamic") == nil {
		return deps, nil
	}
	// A run path would make the loader look elsewhere than the directories
	// the libraries are copied from; Debian's binaries have none.
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		if v, err := f.DynString(tag); err == nil && len(v) > 0 {
			return elfDeps{}, fmt.Errorf("%s has %s %q: only libraries in Debian's own directories are supported", host, tag, v)
		}
	}
	deps.needed, err = f.ImportedLibraries()
	if err != nil {
		return elfDeps{}, fmt.Errorf("%s: DT_NEEDED: %w", host, err)
	}
	return deps, nil
}

// library finds the library name where the loader would and ships it; it
// returns the libraries that one needs.
func (r *resolver) library(name, neededBy string) ([]string, error) {
	if strings.Contains(name, "/") {
		return nil, fmt.Errorf("%s needs %q, a path: only library names are supported", neededBy, name)
	}
	for _, d := range r.dirs {
		p := d + "/" + name
		host, err := resolveIn(r.sysroot, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("library %s: %w", p, err)
		}
		deps, err := r.readELF(host, false)
		if errors.As(err, new(otherMachineError)) {
			continue // as the loader skips it
		}
		if err != nil {
			return nil, fmt.Errorf("library %s, needed by %s: %w", p, neededBy, err)
		}
		return deps.needed, r.put(p, host)
	}
	return nil, fmt.Errorf("library %s, needed by %s, for %s is in none of %s (below %s)", name, neededBy, r.arch, strings.Join(r.dirs, ", "), r.sysroot)
}

// loader ships the program interpreter p. It is a library too (libc needs
// it by name): when that file is already shipped, p becomes a symlink to
// it, as on Debian, instead of a second copy.
func (r *resolver) loader(p, by string) error {
	host, err := resolveIn(r.sysroot, p)
	if err != nil {
		return fmt.Errorf("loader %s of %s: %w", p, by, err)
	}
	if _, err := r.readELF(host, false); err != nil {
		return fmt.Errorf("loader %s of %s: %w", p, by, err)
	}
	if at, ok := r.shipped[host]; ok && at != p {
		return r.link(p, at)
	}
	return r.put(p, host)
}

// put ships the host file host at p, with its permission bits.
func (r *resolver) put(p, host string) error {
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s (for %s) is not a regular file", host, p)
	}
	data, err := os.ReadFile(host)
	if err != nil {
		return err
	}
	f := file{Path: p, Mode: int64(fi.Mode().Perm()), Data: data}
	if err := r.add(f); err != nil {
		return err
	}
	if _, ok := r.shipped[host]; !ok {
		r.shipped[host] = p
	}
	return nil
}

func (r *resolver) link(p, target string) error {
	if target == "" {
		return fmt.Errorf("symlink %s has no target", p)
	}
	return r.add(file{Path: p, Link: target})
}

// add records f; the same path twice is fine only with the same content.
func (r *resolver) add(f file) error {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
		return fmt.Errorf("tool path %q: want an absolute, clean path below /", f.Path)
	}
	if f.Path == Entrypoint || f.Path == certPath {
		return fmt.Errorf("tool path %s is the image's own", f.Path)
	}
	if old, ok := r.files[f.Path]; ok {
		if old.Link != f.Link || old.Mode != f.Mode || !bytes.Equal(old.Data, f.Data) {
			return fmt.Errorf("tool path %s is given twice, with different content", f.Path)
		}
		return nil
	}
	r.files[f.Path] = f
	return nil
}

// list returns the files by path.
func (r *resolver) list() []file {
	out := make([]file, 0, len(r.files))
	for _, p := range sortedKeys(r.files) {
		out = append(out, r.files[p])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
