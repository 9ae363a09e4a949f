package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	packBufferSize = 1 << 20
	// packWriteBuffer batches the 512-byte header writes.
	packWriteBuffer = 64 << 10
	// readdirBatch is how many names are read at a time, so a directory
	// with more than MaxEntries names is refused without listing it whole.
	readdirBatch = 4096
	// maxRetype bounds how often an entry that changed type between two
	// looks at it is looked at again.
	maxRetype = 3
	// maxRacyWait bounds the wait for the clock to move past a file's
	// ctime: a ctime further ahead is the clock's fault, not a write's.
	maxRacyWait = 1100 * time.Millisecond
	// leaseWait is about how long a file open for writing is waited for
	// (1ms, then 2ms) before it is spooled instead.
	leaseWait = 2 * time.Millisecond
)

// Overlay xattr names, after the namespace (PackOptions.overlayNamespace).
const (
	ovlOpaque   = "opaque"
	ovlWhiteout = "whiteout"
	ovlRedirect = "redirect"
	ovlMetacopy = "metacopy"
)

// Pack writes the overlayfs upper directory dir to w as an uncompressed OCI
// layer tar stream (see the PackOptions documentation for what it holds and
// what it guarantees of a live upper). dir itself is the caller's: its path
// is followed as given; nothing beneath it is. On error w holds a partial
// stream.
func Pack(ctx context.Context, dir string, w io.Writer, opts PackOptions) (PackStats, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return PackStats{}, err
	}
	if !opts.UserXattr {
		if err := needCapability(unix.CAP_SYS_ADMIN); err != nil {
			return PackStats{}, fmt.Errorf("archive: pack %s: overlayfs keeps its whiteout and opaque markers in trusted.* xattrs, which only CAP_SYS_ADMIN can read: %w", dir, err)
		}
	}
	root, err := openat(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return PackStats{}, fmt.Errorf("archive: opening upper directory: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(root)
	bw := bufio.NewWriterSize(w, packWriteBuffer)
	p := &packer{
		ctx:   ctx,
		opts:  opts,
		ns:    opts.overlayNamespace(),
		tw:    tar.NewWriter(bw),
		links: make(map[fileID]string),
		buf:   make([]byte, packBufferSize),
	}
	if err := p.root(root); err != nil {
		return p.stats, fmt.Errorf("archive: pack %s: %w", dir, err)
	}
	if err := p.tw.Close(); err != nil {
		return p.stats, fmt.Errorf("archive: pack %s: %w", dir, err)
	}
	if err := bw.Flush(); err != nil {
		return p.stats, fmt.Errorf("archive: pack %s: %w", dir, err)
	}
	return p.stats, nil
}

type fileID struct{ dev, ino uint64 }

type packer struct {
	ctx     context.Context
	opts    PackOptions
	ns      string // overlayfs's xattr namespace, "trusted.overlay." or "user.overlay."
	tw      *tar.Writer
	stats   PackStats
	dev     uint64            // the upper's filesystem; nothing else is walked
	links   map[fileID]string // inodes with several names: the first one packed
	buf     []byte
	total   int64 // regular file bytes so far, for MaxTotalSize
	noLease bool  // the filesystem, or this process, cannot take leases
}

// marks are the overlayfs xattrs of one inode that mean something to Pack.
type marks struct {
	opaque, whiteout, redirect, metacopy bool
}

func (p *packer) root(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("inspecting the upper directory: %w", err)
	}
	p.dev = st.Dev
	xattrs, m, err := p.xattrs(rootName, fdXattrs(fd))
	if err != nil {
		return err
	}
	if m.opaque {
		// overlayfs reads no opacity on its root; in a layer it would hide
		// every layer below.
		p.skipped("./", "the opaque xattr of the upper's root, which overlayfs ignores")
	}
	if err := p.write(p.header(tar.TypeDir, "./", &st, xattrs)); err != nil {
		return err
	}
	return p.walk(fd, rootName, 0)
}

// walk packs the entries of the directory open at fd, named dir, depth
// levels below the root, in bytewise order of their names.
func (p *packer) walk(fd int, dir string, depth int) error {
	names, err := p.readNames(fd, dir)
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, base := range names {
		if err := p.ctx.Err(); err != nil {
			return fmt.Errorf("interrupted after %d entries: %w", p.stats.Entries, err)
		}
		if err := p.entry(fd, dir, base, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (p *packer) readNames(fd int, dir string) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", dir, err)
	}
	f := os.NewFile(uintptr(dup), dir)
	defer func() { _ = f.Close() }() // read-only directory
	var names []string
	for {
		batch, err := f.Readdirnames(readdirBatch)
		names = append(names, batch...)
		if p.stats.Entries+len(names) > p.opts.MaxEntries {
			return nil, fmt.Errorf("directory %q brings the upper past MaxEntries=%d entries: %w", dir, p.opts.MaxEntries, ErrLimit)
		}
		if errors.Is(err, io.EOF) || (err == nil && len(batch) == 0) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing %q: %w", dir, err)
		}
	}
}

// entry packs base in the directory open at dirfd. What it is decides how:
// it is looked at without following it, and looked at again if it turns
// out to have changed type in between.
func (p *packer) entry(dirfd int, dir, base string, depth int) error {
	name := joinName(dir, base)
	if len(name)+1 > maxPathLen { // +1: a directory's trailing "/"
		return fmt.Errorf("path %.64q... is %d bytes, beyond the %d a layer entry may have: %w", name, len(name), maxPathLen, ErrLimit)
	}
	if p.opts.Exclude != nil && p.opts.Exclude(name) {
		p.stats.Excluded++
		return nil
	}
	for range maxRetype {
		var st unix.Stat_t
		err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			return nil // removed since the directory was listed
		}
		if err != nil {
			return fmt.Errorf("inspecting %q: %w", name, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = p.directory(dirfd, name, base, depth)
		case unix.S_IFREG:
			err = p.regular(dirfd, name, base)
		case unix.S_IFLNK:
			err = p.symlink(dirfd, name, base, &st)
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			err = p.special(dirfd, name, base, &st)
		case unix.S_IFSOCK:
			p.skipped(name, "a socket, which tar cannot hold")
			return nil
		default:
			return fmt.Errorf("%q has unknown file type %#o", name, st.Mode&unix.S_IFMT)
		}
		if err != errRetype {
			return err
		}
	}
	return fmt.Errorf("%q kept changing type while it was packed: %w", name, ErrFileChanged)
}

// errRetype says an entry was found to be of another type than its first
// look said; entry looks again.
var errRetype = errors.New("entry changed type")

func (p *packer) directory(dirfd int, name, base string, depth int) error {
	if depth > p.opts.MaxDepth {
		return fmt.Errorf("directory %.64q... is nested %d deep, beyond MaxDepth=%d: %w", name, depth, p.opts.MaxDepth, ErrLimit)
	}
	fd, err := openat(dirfd, base, dirFlags, 0)
	switch err {
	case nil:
	case unix.ENOENT:
		return nil
	case unix.ENOTDIR, unix.ELOOP:
		return errRetype
	default:
		return fmt.Errorf("opening directory %q: %w", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("inspecting directory %q: %w", name, err)
	}
	if st.Dev != p.dev {
		return fmt.Errorf("%q is a mount point inside the upper: overlayfs shows what is beneath it, Pack does not cross it: %w", name, ErrUnsafePath)
	}
	xattrs, m, err := p.xattrs(name, fdXattrs(fd))
	if err != nil {
		return err
	}
	if m.redirect {
		return fmt.Errorf("directory %q was renamed with overlayfs redirect_dir on: its content is still the lower directory's, under another name: %w", name, ErrOverlayFeature)
	}
	if err := p.write(p.header(tar.TypeDir, name+"/", &st, xattrs)); err != nil {
		return err
	}
	if m.opaque {
		// Right after the directory, before its children: "hide the lower
		// layers' contents" whatever names it holds.
		p.stats.Opaques++
		if err := p.write(p.marker(joinName(name, opaqueMarker), &st)); err != nil {
			return err
		}
	}
	return p.walk(fd, name, depth)
}

// regular packs a regular file. It is opened as O_PATH first and only
// reopened for reading (through /proc, which names the same inode) once
// that descriptor says it is a regular file: a name the pod swapped for a
// device node between two looks is never opened as a device.
func (p *packer) regular(dirfd int, name, base string) error {
	path, err := openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch err {
	case nil:
	case unix.ENOENT:
		return nil
	default:
		return fmt.Errorf("opening %q: %w", name, err)
	}
	defer unix.Close(path)
	var st unix.Stat_t
	if err := unix.Fstat(path, &st); err != nil {
		return fmt.Errorf("inspecting %q: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errRetype
	}
	if linked, err := p.hardlink(name, &st); linked || err != nil {
		return err
	}
	fd, err := reopen(path)
	if err != nil {
		return fmt.Errorf("opening %q for reading: %w", name, err)
	}
	defer unix.Close(fd)
	return p.content(fd, name, &st)
}

// reopen opens the inode an O_PATH descriptor names for reading. The file
// is the pod's, so O_NOATIME is asked for (we read it, the pod did not),
// which only its owner or CAP_FOWNER may.
func reopen(path int) (int, error) {
	proc := "/proc/self/fd/" + strconv.Itoa(path)
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := openat(unix.AT_FDCWD, proc, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = openat(unix.AT_FDCWD, proc, flags, 0)
	}
	return fd, err
}

// content packs the regular file open at fd: under a read lease straight
// into the stream, else through a spool, checked (see PackOptions).
func (p *packer) content(fd int, name string, st *unix.Stat_t) error {
	for attempt := 0; ; attempt++ {
		// Once the file was found open for writing and spooled, it is
		// asked for a lease without waiting.
		leased := p.lease(fd, attempt == 0)
		done, err := p.tryContent(fd, name, st, leased)
		if leased {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK) // close would too
		}
		if done || err != nil {
			return err
		}
		if attempt >= p.opts.Retries {
			return fmt.Errorf("%q changed while it was read, %d times in a row (a process of the pod writes it): %w", name, attempt+1, ErrFileChanged)
		}
		p.stats.Retries++
		if err := sleep(p.ctx, time.Millisecond<<min(attempt, 7)); err != nil {
			return err
		}
	}
}

// tryContent packs the file once; done false means it changed before
// anything of it was written, and may be tried again.
func (p *packer) tryContent(fd int, name string, st *unix.Stat_t, leased bool) (done bool, err error) {
	if err := unix.Fstat(fd, st); err != nil {
		return false, fmt.Errorf("inspecting %q: %w", name, err)
	}
	if settled, err := p.settle(fd, st); err != nil || !settled {
		return false, err
	}
	if st.Size > p.opts.MaxFileSize {
		return false, fmt.Errorf("%q is %d bytes, beyond MaxFileSize=%d: %w", name, st.Size, p.opts.MaxFileSize, ErrLimit)
	}
	if st.Size > p.opts.MaxTotalSize-p.total {
		return false, fmt.Errorf("%q (%d bytes) brings the layer past MaxTotalSize=%d: %w", name, st.Size, p.opts.MaxTotalSize, ErrLimit)
	}
	xattrs, m, err := p.xattrs(name, fdXattrs(fd))
	if err != nil {
		return false, err
	}
	if m.metacopy {
		return false, fmt.Errorf("%q is a metadata-only copy-up (overlayfs metacopy on): its data is still the lower file's: %w", name, ErrOverlayFeature)
	}
	if m.whiteout {
		return true, p.whiteout(name, st)
	}
	hdr := p.header(tar.TypeReg, name, st, xattrs)
	hdr.Size = st.Size

	if !leased {
		sp, changed, err := p.spool(fd, name, st)
		if err != nil || changed {
			return false, err
		}
		defer sp.close()
		if err := p.write(hdr); err != nil {
			return false, err
		}
		if err := p.copyData(sp.reader(), name, st.Size); err != nil {
			return false, err
		}
		p.stats.Spooled++
		p.remember(name, st)
		return true, nil
	}

	if err := p.write(hdr); err != nil {
		return false, err
	}
	// From here on the entry is in the stream: a change is an error.
	if err := p.copyData(io.NewSectionReader(fdReaderAt(fd), 0, st.Size), name, st.Size); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return false, fmt.Errorf("%q was truncated while it was streamed: %w", name, ErrFileChanged)
		}
		return false, err
	}
	if p.opts.afterRead != nil {
		p.opts.afterRead(name, true)
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil {
		return false, fmt.Errorf("inspecting %q: %w", name, err)
	}
	if !sameFile(st, &after) {
		return false, fmt.Errorf("%q changed after its content was streamed (truncated by path, or a writer let through after the lease-break time): %w", name, ErrFileChanged)
	}
	p.stats.Leased++
	p.remember(name, st)
	return true, nil
}

// lease takes a read lease on fd: granted only while nobody has the file
// open for writing, and held, openers for writing wait. With wait, a file
// open for writing is given a few milliseconds to be closed: most writers
// open, write and close, and a closed file is a whole version of it.
func (p *packer) lease(fd int, wait bool) bool {
	step := time.Millisecond
	if !wait {
		step = leaseWait + 1
	}
	for ; !p.noLease; step *= 2 {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
		switch {
		case err == nil:
			return true
		case err != unix.EAGAIN: // leases disabled, not supported here, or not ours to take
			p.noLease = true
		case step > leaseWait || sleep(p.ctx, step) != nil:
			return false // held open for writing: spool it
		}
	}
	return false
}

// settle makes sure a change to the file after st was taken gets a ctime
// other than st's: the filesystem stamps times from the kernel's coarse
// clock (to the second on some), so a write in the same tick as the last
// would leave ctime as it was. It waits until the clock has moved past
// st's ctime; settled false means the file changed meanwhile, and is to
// be looked at again.
func (p *packer) settle(fd int, st *unix.Stat_t) (settled bool, err error) {
	for range 8 {
		wait := racyWait(st.Ctim)
		if wait <= 0 {
			return true, nil
		}
		if err := sleep(p.ctx, wait); err != nil {
			return false, err
		}
		var again unix.Stat_t
		if err := unix.Fstat(fd, &again); err != nil {
			return false, err
		}
		if !sameFile(st, &again) {
			*st = again
			return false, nil
		}
	}
	return false, nil
}

// racyWait is how long until the coarse clock passes ctime by the
// filesystem's granularity: a nanosecond, or a second when ctime has no
// fraction (filesystems that keep seconds only, or a rare exact second).
func racyWait(ctime unix.Timespec) time.Duration {
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now); err != nil {
		return 0
	}
	gran := time.Nanosecond
	if ctime.Nsec == 0 {
		gran = time.Second
	}
	d := time.Unix(ctime.Unix()).Add(gran).Sub(time.Unix(now.Unix()))
	if d <= 0 || d > maxRacyWait {
		return 0
	}
	return d + time.Millisecond // the coarse clock moves a tick at a time
}

func sameFile(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim &&
		a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// spooled is a checked copy of a file: in memory, or in an unnamed file.
type spooled struct {
	mem  []byte
	file *os.File
}

func (s *spooled) reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, 1<<62)
	}
	return bytes.NewReader(s.mem)
}

func (s *spooled) close() {
	if s.file != nil {
		_ = s.file.Close() // unnamed: nothing of it outlives the close
	}
}

// spool copies the file's st.Size bytes and reports whether it changed
// meanwhile (and is to be copied again).
func (p *packer) spool(fd int, name string, st *unix.Stat_t) (_ *spooled, changed bool, err error) {
	sp := &spooled{}
	var mem *bytes.Buffer
	var w io.Writer
	if st.Size <= p.opts.SpoolMemory {
		mem = bytes.NewBuffer(make([]byte, 0, st.Size))
		w = mem
	} else {
		if sp.file, err = tempFile(p.opts.SpoolDir); err != nil {
			return nil, false, fmt.Errorf("spooling %q: %w", name, err)
		}
		w = sp.file
	}
	// One byte more than the size, to see a file that grew.
	n, err := io.CopyBuffer(w, io.NewSectionReader(fdReaderAt(fd), 0, st.Size+1), p.buf)
	if err != nil {
		sp.close()
		return nil, false, fmt.Errorf("spooling %q: %w", name, err)
	}
	if p.opts.afterRead != nil {
		p.opts.afterRead(name, false)
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil {
		sp.close()
		return nil, false, fmt.Errorf("inspecting %q: %w", name, err)
	}
	if n != st.Size || !sameFile(st, &after) {
		sp.close()
		return nil, true, nil
	}
	if mem != nil {
		sp.mem = mem.Bytes()
	}
	return sp, false, nil
}

// tempFile is an unnamed file in dir (os.TempDir() if empty), or a named
// one removed at once where O_TMPFILE is not supported.
func tempFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(spool)"), nil
	}
	f, err := os.CreateTemp(dir, ".pack-spool-")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// copyData writes size bytes of r, the content of name, to the stream.
func (p *packer) copyData(r io.Reader, name string, size int64) error {
	for done := int64(0); done < size; {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		chunk := p.buf[:min(int64(len(p.buf)), size-done)]
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			if _, werr := p.tw.Write(chunk[:n]); werr != nil {
				return fmt.Errorf("writing %q: %w", name, werr)
			}
		}
		done += int64(n)
		p.stats.Bytes += int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("reading %q (%d of %d bytes): %w", name, done, size, err)
		}
	}
	p.total += size
	return nil
}

// fdReaderAt reads a file descriptor at offsets, retrying EINTR.
type fdReaderAt int

func (fd fdReaderAt) ReadAt(b []byte, off int64) (int, error) {
	for {
		n, err := unix.Pread(int(fd), b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(b) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// hardlink packs name as a link to the first name of its inode when that
// was packed already, and reports whether it did. remember records a first
// name once its entry is in the stream.
func (p *packer) hardlink(name string, st *unix.Stat_t) (bool, error) {
	if st.Nlink < 2 {
		return false, nil
	}
	first, ok := p.links[fileID{st.Dev, st.Ino}]
	if !ok {
		return false, nil
	}
	hdr := p.header(tar.TypeLink, name, st, nil)
	hdr.Linkname = first
	p.stats.Hardlinks++
	return true, p.write(hdr)
}

func (p *packer) remember(name string, st *unix.Stat_t) {
	if st.Nlink > 1 {
		p.links[fileID{st.Dev, st.Ino}] = name
	}
}

func (p *packer) symlink(dirfd int, name, base string, st *unix.Stat_t) error {
	if linked, err := p.hardlink(name, st); linked || err != nil {
		return err
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, base, buf)
	switch err {
	case nil:
	case unix.ENOENT:
		return nil
	case unix.EINVAL: // no longer a symlink
		return errRetype
	default:
		return fmt.Errorf("reading symlink %q: %w", name, err)
	}
	xattrs, _, err := p.xattrs(name, pathXattrs(dirfd, base))
	if err != nil {
		return err
	}
	hdr := p.header(tar.TypeSymlink, name, st, xattrs)
	hdr.Linkname = string(buf[:n])
	if err := p.write(hdr); err != nil {
		return err
	}
	p.remember(name, st)
	return nil
}

// special packs a device node or fifo as an entry, never opening it; a 0/0
// character device is overlayfs's whiteout. Whiteouts are often hardlinks
// of one another (overlayfs shares one inode among them): they are never
// packed as links.
func (p *packer) special(dirfd int, name, base string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
		return p.whiteout(name, st)
	}
	if linked, err := p.hardlink(name, st); linked || err != nil {
		return err
	}
	xattrs, _, err := p.xattrs(name, pathXattrs(dirfd, base))
	if err != nil {
		return err
	}
	var typ byte
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = tar.TypeChar
	case unix.S_IFBLK:
		typ = tar.TypeBlock
	default:
		typ = tar.TypeFifo
	}
	hdr := p.header(typ, name, st, xattrs)
	if typ != tar.TypeFifo {
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	if err := p.write(hdr); err != nil {
		return err
	}
	p.remember(name, st)
	return nil
}

// whiteout packs "name was deleted" as the empty file dir/.wh.base.
func (p *packer) whiteout(name string, st *unix.Stat_t) error {
	dir, base := splitName(name)
	p.stats.Whiteouts++
	return p.write(p.marker(joinName(dir, whiteoutPrefix+base), st))
}

// marker is a whiteout or opaque entry: an empty file owned by root with
// no permissions, as Docker writes them, timed as the inode it stands for.
func (p *packer) marker(name string, st *unix.Stat_t) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, ModTime: p.mtime(st)}
}

func (p *packer) header(typ byte, name string, st *unix.Stat_t, xattrs []xattr) *tar.Header {
	hdr := &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     int64(st.Mode & modeMask),
		Uid:      int(st.Uid),
		Gid:      int(st.Gid),
		ModTime:  p.mtime(st),
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(xattrs))
		for _, x := range xattrs {
			hdr.PAXRecords[paxSchilyXattr+x.name] = x.value
		}
	}
	return hdr
}

// mtime is an entry's time: to the second, as Docker packs layers (a
// fraction would cost every entry a PAX record), or the fixed one.
func (p *packer) mtime(st *unix.Stat_t) time.Time {
	if p.opts.FixedMtime != nil {
		return p.opts.FixedMtime.Truncate(time.Second)
	}
	return time.Unix(st.Mtim.Sec, 0)
}

func (p *packer) write(hdr *tar.Header) error {
	p.stats.Entries++
	if p.stats.Entries > p.opts.MaxEntries {
		return fmt.Errorf("the upper has more than MaxEntries=%d entries: %w", p.opts.MaxEntries, ErrLimit)
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing entry %q: %w", hdr.Name, err)
	}
	return nil
}

func (p *packer) skipped(name, reason string) {
	p.stats.Skipped++
	if p.opts.Warn != nil {
		p.opts.Warn(name, reason)
	}
}

// xattrReader lists and reads one inode's xattrs.
type xattrReader struct {
	list func(buf []byte) (int, error)
	get  func(name string, buf []byte) (int, error)
}

func fdXattrs(fd int) xattrReader {
	return xattrReader{
		list: func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		get:  func(name string, buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) },
	}
}

// pathXattrs reads the xattrs of base in dirfd without following it, for
// what cannot be opened (symlinks) or must not be (devices, fifos): through
// the directory's descriptor in /proc, which pins the directory as the *at
// calls do.
func pathXattrs(dirfd int, base string) xattrReader {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
	return xattrReader{
		list: func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) },
		get:  func(name string, buf []byte) (int, error) { return unix.Lgetxattr(p, name, buf) },
	}
}

// xattrs returns the xattrs of name to pack, sorted, and the overlayfs
// markers among them.
func (p *packer) xattrs(name string, r xattrReader) ([]xattr, marks, error) {
	var m marks
	names, err := readXattrNames(r)
	if err != nil {
		return nil, m, fmt.Errorf("listing xattrs of %q: %w", name, err)
	}
	var out []xattr
	for _, n := range names {
		keep, warn := packXattr(n, p.ns)
		if !keep {
			if warn != "" && p.opts.Warn != nil {
				p.opts.Warn(name, warn)
			}
			if rest, ok := strings.CutPrefix(n, p.ns); ok {
				switch rest {
				case ovlOpaque:
					v, err := readXattr(r, n)
					if err != nil {
						return nil, m, fmt.Errorf("reading xattr %q of %q: %w", n, name, err)
					}
					m.opaque = v == "y"
				case ovlWhiteout:
					m.whiteout = true
				case ovlRedirect:
					m.redirect = true
				case ovlMetacopy:
					m.metacopy = true
				}
			}
			continue
		}
		v, err := readXattr(r, n)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		}
		if err != nil {
			return nil, m, fmt.Errorf("reading xattr %q of %q: %w", n, name, err)
		}
		out = append(out, xattr{name: n, value: v})
	}
	return out, m, nil
}

// readXattrNames lists the names, sorted; none where xattrs are not
// supported.
func readXattrNames(r xattrReader) ([]string, error) {
	b, err := readGrowing(r.list)
	if err == unix.ENOTSUP {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for n := range bytes.SplitSeq(b, []byte{0}) {
		if len(n) > 0 {
			names = append(names, string(n))
		}
	}
	slices.Sort(names)
	return names, nil
}

func readXattr(r xattrReader, name string) (string, error) {
	b, err := readGrowing(func(buf []byte) (int, error) { return r.get(name, buf) })
	return string(b), err
}

// readGrowing calls f with a buffer large enough for what it returns,
// asking its size first and again when it grew meanwhile (ERANGE).
func readGrowing(f func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := f(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = f(buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.ERANGE
}

// needCapability reports whether this process has cap in its effective
// set.
func needCapability(cap uintptr) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[cap/32].Effective&(1<<(cap%32)) == 0 {
		return fmt.Errorf("this process lacks capability %d", cap)
	}
	return nil
}
