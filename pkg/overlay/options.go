// Package overlay mounts overlayfs volumes whose lower layers live in an
// overlay2 store laid out like Docker's: a root directory R holding one
// directory per layer and R/l/<26-char ID> symlinks to ../<layer>/diff, so
// that a layer can be named by a short path relative to R.
//
// This file holds the pure part: validating a Config and computing the
// options handed to the kernel. The *_linux.go files make the syscalls.
package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MaxLowers is the kernel's limit on lower layers (OVL_MAX_STACK).
const MaxLowers = 500

// maxFSConfigValue is the longest string fsconfig(FSCONFIG_SET_STRING)
// accepts: the kernel copies values with strndup_user(value, 256), so 255
// bytes plus the NUL.
const maxFSConfigValue = 255

var (
	// ErrTooManyLowers is returned for a Config with more than MaxLowers
	// lower layers.
	ErrTooManyLowers = errors.New("too many lower layers")
	// ErrDataTooLong is returned when the mount(2) data for a Config does
	// not fit in the single page the kernel copies.
	ErrDataTooLong = errors.New("overlay mount data too long")
	// ErrNoLowerdirPlus is returned when the kernel's overlayfs does not
	// accept layers one at a time through fsconfig "lowerdir+" (Linux 6.8+).
	ErrNoLowerdirPlus = errors.New("kernel lacks overlayfs lowerdir+ (Linux 6.8+)")
)

// Mode selects how Mount hands the layers to the kernel.
type Mode int

const (
	// ModeAuto uses the new mount API with one "lowerdir+" per layer when
	// the kernel has it (6.8+) and falls back to ModeLegacy otherwise.
	ModeAuto Mode = iota
	// ModeFSConfig uses only fsopen/fsconfig/fsmount/move_mount.
	ModeFSConfig
	// ModeLegacy uses mount(2) with paths relative to Config.Dir, which
	// limits the layers to what fits in one page of mount data.
	ModeLegacy
)

// ParseMode parses "auto", "fsconfig" or "legacy".
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ModeAuto, ModeFSConfig, ModeLegacy} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown overlay mount mode %q: want auto, fsconfig or legacy", s)
}

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeFSConfig:
		return "fsconfig"
	case ModeLegacy:
		return "legacy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Config describes one overlay mount. All layer paths are relative to Dir
// so that mount(2) data stays short (see LegacyData).
type Config struct {
	Dir    string   // absolute directory the paths below are relative to (the overlay2 root)
	Lowers []string // uppermost first, relative to Dir (e.g. "l/ABC..."); 1..MaxLowers
	Upper  string   // relative to Dir; "" for a read-only mount (lowers only)
	Work   string   // relative to Dir; required iff Upper != ""
	// Flags are the mount's attributes; a Config without Upper is
	// read-only whatever Flags.ReadOnly says.
	Flags Flags
}

func (c Config) readOnly() bool { return c.Upper == "" }

// Validate checks the layer count against the kernel's limit, that every
// path is a clean path inside Dir that overlay's option syntax can carry,
// and that Work is given exactly when Upper is.
func (c Config) Validate() error {
	if c.Dir == "" || !filepath.IsAbs(c.Dir) || filepath.Clean(c.Dir) != c.Dir {
		return fmt.Errorf("invalid overlay config: Dir %q must be a clean absolute path", c.Dir)
	}
	switch n := len(c.Lowers); {
	case n == 0:
		return fmt.Errorf("invalid overlay config: no lower layers, need 1 to %d", MaxLowers)
	case n > MaxLowers:
		return fmt.Errorf("invalid overlay config: %w: %d lower layers, the kernel allows at most %d",
			ErrTooManyLowers, n, MaxLowers)
	}
	for i, l := range c.Lowers {
		if err := checkRel(l); err != nil {
			return fmt.Errorf("invalid overlay config: lower %d %q: %w", i, l, err)
		}
	}
	if (c.Upper == "") != (c.Work == "") {
		return fmt.Errorf("invalid overlay config: Upper %q and Work %q must be set together", c.Upper, c.Work)
	}
	if c.Upper == "" {
		return nil
	}
	if err := checkRel(c.Upper); err != nil {
		return fmt.Errorf("invalid overlay config: Upper %q: %w", c.Upper, err)
	}
	if err := checkRel(c.Work); err != nil {
		return fmt.Errorf("invalid overlay config: Work %q: %w", c.Work, err)
	}
	if c.Upper == c.Work {
		return fmt.Errorf("invalid overlay config: Upper and Work are both %q", c.Upper)
	}
	return nil
}

// checkRel accepts clean relative paths that stay inside Dir and carry none
// of the characters overlay's option parser treats specially: ',' separates
// options, ':' separates lower layers and '\' escapes either. Refusing them
// keeps a path from injecting options, and keeps ModeAuto's two encodings
// equivalent.
func checkRel(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case filepath.IsAbs(p):
		return errors.New("absolute path, want one relative to Dir")
	case filepath.Clean(p) != p:
		return fmt.Errorf("not a clean path (clean form %q)", filepath.Clean(p))
	case p == ".":
		return errors.New("names Dir itself")
	case p == ".." || strings.HasPrefix(p, "../"):
		return errors.New("leaves Dir")
	}
	if i := strings.IndexAny(p, ",:\\\x00"); i >= 0 {
		return fmt.Errorf("contains %q, which overlay's option syntax reserves", p[i])
	}
	return nil
}

// LegacyData returns the mount(2) data for c, with paths relative to c.Dir:
//
//	lowerdir=l/A:l/B,upperdir=D/diff,workdir=D/work,index=off
//
// The kernel copies at most one page of data and overwrites its last byte
// with a NUL, so anything longer than os.Getpagesize()-1 bytes would be cut
// short silently; LegacyData refuses it with ErrDataTooLong instead.
func LegacyData(c Config) (string, error) {
	return legacyData(c, os.Getpagesize())
}

func legacyData(c Config, pageSize int) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("lowerdir=")
	b.WriteString(strings.Join(c.Lowers, ":"))
	if c.Upper != "" {
		b.WriteString(",upperdir=")
		b.WriteString(c.Upper)
		b.WriteString(",workdir=")
		b.WriteString(c.Work)
	}
	// index=off: with the index on, overlayfs records the lowers' identity
	// in the upper and refuses it over any other set of lowers (as after a
	// layer is re-extracted), and locks upper and work against other mounts.
	b.WriteString(",index=off")
	if limit := pageSize - 1; b.Len() > limit {
		return "", fmt.Errorf("%w: %d lower layers need %d bytes of mount data, %d over the page size %d "+
			"(mount(2) keeps %d bytes); layers one at a time through lowerdir+ (Linux 6.8+) have no such limit",
			ErrDataTooLong, len(c.Lowers), b.Len(), b.Len()-limit, pageSize, limit)
	}
	return b.String(), nil
}

// fsParam is one fsconfig(2) call: a string value, or a flag when value is "".
type fsParam struct {
	key, value string
}

func (p fsParam) String() string {
	if p.value == "" {
		return p.key
	}
	return p.key + "=" + p.value
}

// fsconfigParams returns the fsconfig calls that configure c, in order.
// Unlike mount(2) data these carry absolute paths: fsconfig resolves them
// in the caller's context and there is no page limit to dodge, only the
// per-value one.
func fsconfigParams(c Config) ([]fsParam, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return validFSConfigParams(c)
}

// validFSConfigParams is fsconfigParams of a Config already validated: a
// long chain's paths are checked once per mount, not once per step.
func validFSConfigParams(c Config) ([]fsParam, error) {
	params := make([]fsParam, 0, len(c.Lowers)+5)
	// The source only names the mount in mountinfo; match what mount(2) shows.
	params = append(params, fsParam{"source", "overlay"})
	for i, l := range c.Lowers {
		p, err := fsconfigPath(c.Dir, l)
		if err != nil {
			return nil, fmt.Errorf("lower %d: %w", i, err)
		}
		params = append(params, fsParam{"lowerdir+", p})
	}
	if c.Upper != "" {
		for _, kv := range [][2]string{{"upperdir", c.Upper}, {"workdir", c.Work}} {
			p, err := fsconfigPath(c.Dir, kv[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", kv[0], err)
			}
			params = append(params, fsParam{kv[0], p})
		}
	}
	params = append(params, fsParam{"index", "off"})
	if c.readOnly() {
		params = append(params, fsParam{key: "ro"})
	}
	return params, nil
}

func fsconfigPath(dir, rel string) (string, error) {
	p := filepath.Join(dir, rel)
	if len(p) > maxFSConfigValue {
		return "", fmt.Errorf("path %q is %d bytes, over fsconfig's limit of %d", p, len(p), maxFSConfigValue)
	}
	return p, nil
}
