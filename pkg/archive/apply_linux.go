package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const (
	copyBufferSize = 1 << 20
	// readBufferSize batches the 512-byte header reads; file data larger
	// than it bypasses the buffer.
	readBufferSize = 64 << 10
)

// Apply extracts the uncompressed layer tar stream r into dir, an existing
// empty directory, converting Docker/OCI whiteouts to overlayfs form (see the
// package documentation). It reads r to its end, past the tar end-of-archive
// marker, so a caller hashing r sees every byte. On error dir holds a partial
// tree, which the caller removes.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Stats, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	root, err := openLayerRoot(dir)
	if err != nil {
		return Stats{}, err
	}
	a := &applier{
		ctx:       ctx,
		opts:      opts,
		root:      root,
		cur:       dirHandle{fd: -1},
		noOpenat2: opts.forceWalk,
		buf:       make([]byte, copyBufferSize),
		dirTimes:  make(map[string]dirTime),
	}
	defer a.close()
	a.creator.uid, a.creator.gid = unix.Geteuid(), unix.Getegid()
	a.creator.umask, a.creator.umaskKnown = readUmask()

	br := bufio.NewReaderSize(r, readBufferSize)
	if err := a.extract(tar.NewReader(br)); err != nil {
		return a.stats, err
	}
	if err := a.applyDirTimes(); err != nil {
		return a.stats, fmt.Errorf("archive: setting directory times in %s: %w", dir, err)
	}
	if err := a.drain(br); err != nil {
		return a.stats, fmt.Errorf("archive: reading past end of tar: %w", err)
	}
	return a.stats, nil
}

// openLayerRoot opens dir and checks it is empty: whiteout conversion
// assumes everything in dir came from this layer.
func openLayerRoot(dir string) (int, error) {
	fd, err := openat(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("archive: opening layer directory: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("archive: opening layer directory %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(dup), dir)
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if cerr := f.Close(); cerr != nil && err == nil && len(names) == 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("archive: listing layer directory %s: %w", dir, cerr)
	}
	if len(names) > 0 || err != nil {
		unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("holds %q", names[0])
		}
		return -1, fmt.Errorf("archive: layer directory %s must be empty: %w", dir, err)
	}
	return fd, nil
}

type applier struct {
	ctx       context.Context
	opts      Options
	root      int // layer directory; every path is opened beneath it
	cur       dirHandle
	noOpenat2 bool
	creator   creator
	buf       []byte
	stats     Stats
	total     int64 // declared data sizes so far, for MaxTotalSize
	// dirTimes are set once all entries are written. removed says when
	// (by entry number) a directory tree was replaced, so times recorded
	// for it before then are dropped without scanning dirTimes.
	dirTimes map[string]dirTime
	removed  map[string]int
	// skipped names entries left out on purpose, so hardlinks to them
	// are skipped too instead of failing the layer.
	skipped map[string]struct{}
}

func (a *applier) close() {
	a.closeCur()
	unix.Close(a.root)
}

func (a *applier) extract(tr *tar.Reader) error {
	for {
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("archive: extraction interrupted after %d entries: %w", a.stats.Entries, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: reading tar header after %d entries: %w", a.stats.Entries, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // archive-wide metadata, not a file
		}
		a.stats.Entries++
		if a.stats.Entries > a.opts.MaxEntries {
			return fmt.Errorf("archive: layer has more than MaxEntries=%d entries: %w", a.opts.MaxEntries, ErrLimit)
		}
		if err := a.checkSize(hdr); err != nil {
			return fmt.Errorf("archive: tar entry %d %q: %w", a.stats.Entries, hdr.Name, err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return fmt.Errorf("archive: tar entry %d %q: %w", a.stats.Entries, hdr.Name, err)
		}
	}
}

// checkSize applies the size limits to every entry with a data section,
// extracted or not: skipping data costs decompression too.
func (a *applier) checkSize(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return nil // tar ignores their size field
	}
	if hdr.Size > a.opts.MaxFileSize {
		return fmt.Errorf("size %d exceeds MaxFileSize=%d: %w", hdr.Size, a.opts.MaxFileSize, ErrLimit)
	}
	if hdr.Size > a.opts.MaxTotalSize-a.total { // a.total <= MaxTotalSize: no overflow
		return fmt.Errorf("size %d brings the layer past MaxTotalSize=%d: %w", hdr.Size, a.opts.MaxTotalSize, ErrLimit)
	}
	a.total += hdr.Size
	return nil
}

func (a *applier) entry(hdr *tar.Header, tr *tar.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	xattrs, err := entryXattrs(hdr.PAXRecords)
	if err != nil {
		return err
	}
	own, err := headerOwner(hdr)
	if err != nil {
		return err
	}
	if name == rootName {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry of tar type %q names the layer root, which only a directory entry may: %w", hdr.Typeflag, ErrInvalidHeader)
		}
		return a.rootDir(hdr, own, xattrs)
	}

	kind, target, err := classify(name)
	if err != nil {
		return err
	}
	switch kind {
	case kindAufsMeta:
		a.skip(hdr.Name, name, "aufs metadata (.wh..wh.*) has no overlayfs equivalent")
		return nil
	case kindOpaque:
		return a.opaque(target)
	case kindWhiteout:
		return a.whiteout(target)
	}

	if len(a.skipped) > 0 {
		delete(a.skipped, name)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return a.regular(name, hdr, own, xattrs, tr)
	case tar.TypeDir:
		return a.directory(name, hdr, own, xattrs)
	case tar.TypeSymlink:
		return a.symlink(name, hdr, own, xattrs)
	case tar.TypeLink:
		return a.hardlink(name, hdr)
	case tar.TypeChar:
		if hdr.Devmajor == 0 && hdr.Devminor == 0 {
			return a.whiteout(name) // already in overlayfs form
		}
		return a.skipReplacing(hdr.Name, name, fmt.Sprintf("character device %d:%d is not extracted", hdr.Devmajor, hdr.Devminor))
	case tar.TypeBlock:
		return a.skipReplacing(hdr.Name, name, fmt.Sprintf("block device %d:%d is not extracted", hdr.Devmajor, hdr.Devminor))
	case tar.TypeFifo:
		return a.skipReplacing(hdr.Name, name, "fifo is not extracted")
	default:
		return a.skipReplacing(hdr.Name, name, fmt.Sprintf("tar entry type %q is not supported", hdr.Typeflag))
	}
}

// skip records an entry left out on purpose.
func (a *applier) skip(rawName, name, reason string) {
	a.stats.Skipped++
	if a.skipped == nil {
		a.skipped = make(map[string]struct{})
	}
	a.skipped[name] = struct{}{}
	if a.opts.Warn != nil {
		a.opts.Warn(rawName, reason)
	}
}

// skipReplacing skips an entry that, had it been extracted, would have
// replaced whatever an earlier entry put at name; so that goes too.
func (a *applier) skipReplacing(rawName, name, reason string) error {
	a.skip(rawName, name, reason)
	dir, base := splitName(name)
	parent, err := a.parentDir(dir, existingDirs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return a.clear(parent, name, base)
}

// drain consumes what follows the tar end-of-archive marker (padding,
// usually) so the caller's digest covers the whole blob. It counts against
// MaxTotalSize, so a stream can't make Apply decompress forever.
func (a *applier) drain(r io.Reader) error {
	for {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(a.buf)
		if int64(n) > a.opts.MaxTotalSize-a.total {
			return fmt.Errorf("data after the tar end brings the layer past MaxTotalSize=%d: %w", a.opts.MaxTotalSize, ErrLimit)
		}
		a.total += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
