package main

import (
	"debug/elf"
	"errors"
	"fmt"
)

// elfMachine is the ELF machine GOARCH's binaries declare.
func elfMachine(arch string) (elf.Machine, bool) {
	switch arch {
	case "amd64":
		return elf.EM_X86_64, true
	case "arm64":
		return elf.EM_AARCH64, true
	case "arm":
		return elf.EM_ARM, true
	case "386":
		return elf.EM_386, true
	case "ppc64le":
		return elf.EM_PPC64, true
	case "s390x":
		return elf.EM_S390, true
	case "riscv64":
		return elf.EM_RISCV, true
	}
	return elf.EM_NONE, false
}

// debianTriplet is the multiarch directory Debian keeps GOARCH's libraries
// in, below /lib and /usr/lib. For arm it is armhf's, the only 32-bit ARM
// port Kubernetes images are built for.
func debianTriplet(arch string) (string, bool) {
	t, ok := map[string]string{
		"amd64":   "x86_64-linux-gnu",
		"arm64":   "aarch64-linux-gnu",
		"arm":     "arm-linux-gnueabihf",
		"386":     "i386-linux-gnu",
		"ppc64le": "powerpc64le-linux-gnu",
		"s390x":   "s390x-linux-gnu",
		"riscv64": "riscv64-linux-gnu",
	}[arch]
	return t, ok
}

// checkStatic fails unless path is a Linux executable for arch without a
// dynamic loader: the image has no libc, so a binary built with cgo would
// exist and still not start ("no such file or directory").
func checkStatic(path, arch string) (err error) {
	want, ok := elfMachine(arch)
	if !ok {
		return fmt.Errorf("%s: architecture %q is not one of amd64, arm64, arm, 386, ppc64le, s390x, riscv64", path, arch)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s is an ELF %s, not an executable", path, f.Type)
	}
	if f.Machine != want {
		return fmt.Errorf("%s is built for %s, not for %s (%s): check GOARCH", path, f.Machine, arch, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it names an ELF interpreter): build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}
