package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxLinks is how many symlinks one lookup follows, as Linux's ELOOP limit.
const maxLinks = 40

// resolveIn follows p's symlinks the way a process chrooted to root would,
// and returns where the file it names is on this machine. The Dockerfile
// reads a Debian root of the target platform mounted at a directory, whose
// links are absolute (/usr/lib64/ld-linux-x86-64.so.2 ->
// /lib/x86_64-linux-gnu/...): they must stay inside that root, which
// filepath.EvalSymlinks does not do. root "/" is this machine itself.
func resolveIn(root, p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q: want an absolute path", p)
	}
	rest := strings.Split(p, "/")
	cur, links := "/", 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: more than %d symlinks", p, maxLinks)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, filepath.FromSlash(cur)), nil
}
