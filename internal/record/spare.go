package record

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/atomicfile"
)

// A save through a new temporary file allocates an inode, and the replaced
// record's inode is freed. ext4 without a journal passes over every inode
// freed in the last minutes, one buffer lookup each, when it allocates
// one, so where volumes churn every save paid for all recent ones (see
// layers/spare.go). With Options.Spares, the files of replaced and removed
// records are kept under hidden temporary names instead and written over
// by later saves: a save is then a write and a rename, and no inode comes
// or goes.

// spareTag starts the names of kept files. They match TempGlob, so Open
// removes those a crash or a stop left, as it removes a save's leftovers.
const spareTag = ".tmp-spare-"

// spares are the kept files of one Store, and what it knows of the files
// it wrote: their size (each is recordPerm), so that writing over one
// needs no fstat(2), and a shorter record is padded to it (JSON allows
// trailing white space) rather than truncated, which would be another
// syscall.
type spares struct {
	max int

	mu      sync.Mutex
	kept    []keptFile
	written map[string]int64 // record path -> the size of the file this store wrote there
}

// keptFile is a kept file and its size; -1 when not known (a record of
// an earlier process that Remove or an exchange made a kept file).
type keptFile struct {
	path string
	size int64
}

// take returns a kept file, or one with path "" when none is left.
func (p *spares) take() keptFile {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.kept)
	if n == 0 {
		return keptFile{}
	}
	f := p.kept[n-1]
	p.kept = p.kept[:n-1]
	return f
}

// keep adds f to the kept files and reports whether there was room.
func (p *spares) keep(f keptFile) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.kept) >= p.max {
		return false
	}
	p.kept = append(p.kept, f)
	return true
}

// room reports whether another file may be kept.
func (p *spares) room() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.kept) < p.max
}

// wrote records that the record at path is now a file of size bytes, and
// returns what the file there before was: its size, -1 if not known.
func (p *spares) wrote(path string, size int64) (before int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before, ok := p.written[path]
	if !ok {
		before = -1
	}
	if p.written == nil {
		p.written = map[string]int64{}
	}
	p.written[path] = size
	return before
}

// forget drops what is known of the record at path, which is gone, and
// returns its size, -1 if not known.
func (p *spares) forget(path string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	size, ok := p.written[path]
	if !ok {
		return -1
	}
	delete(p.written, path)
	return size
}

// exists reports whether the store wrote the record at path and has not
// removed it since; false also when it does not know.
func (p *spares) exists(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.written[path]
	return ok
}

// name returns a fresh name for a file Remove keeps, in dir: random, so
// that no leftover of another process, which Open may keep while it is
// young, is renamed over.
func (p *spares) name(dir string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(dir, spareTag+hex.EncodeToString(b[:])), nil
}

// saveThroughSpare replaces path with data through a kept file, written
// over in place (nothing reads a kept file, so only the rename that puts
// it in place need be atomic), or a new one when none is kept. The file
// the rename replaces is kept in turn.
func (s *Store[T]) saveThroughSpare(path string, data []byte, durability atomicfile.Durability) error {
	for {
		f, err := s.spareOrNew()
		if err != nil {
			return err
		}
		exchanged := false
		size, err := overwrite(f, data, durability)
		if err == nil {
			exchanged, err = s.replace(f.path, path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			// A kept file another process's Open removed (it is past
			// StaleTemp): nothing was replaced; try the next one.
			continue
		}
		if err != nil {
			s.spares.forget(path) // the record may be either file now
			return errors.Join(err, removeIfThere(f.path))
		}
		before := s.spares.wrote(path, size)
		if exchanged { // the old record is under f's name now
			s.keepOrRemove(keptFile{path: f.path, size: before})
		}
		return nil
	}
}

// replace moves tmp to path, choosing the call by what the store knows:
// a record it wrote is exchanged, a new one renamed into place (see
// replaceExisting, replaceNew).
func (s *Store[T]) replace(tmp, path string) (exchanged bool, err error) {
	if s.spares.exists(path) {
		return replaceExisting(tmp, path)
	}
	return replaceNew(tmp, path)
}

// spareOrNew returns a kept file, or else a new, empty one.
func (s *Store[T]) spareOrNew() (keptFile, error) {
	if f := s.spares.take(); f.path != "" {
		return f, nil
	}
	for range 8 {
		tmp, err := s.spares.name(s.dir)
		if err != nil {
			return keptFile{}, err
		}
		fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, recordPerm)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return keptFile{}, &fs.PathError{Op: "create", Path: tmp, Err: err}
		}
		// Its mode may be less than recordPerm under a umask: the size
		// not known makes overwrite check it.
		if err := unix.Close(fd); err != nil {
			return keptFile{}, errors.Join(err, removeIfThere(tmp))
		}
		return keptFile{path: tmp, size: -1}, nil
	}
	return keptFile{}, fmt.Errorf("create a temporary file in %s: no free name after 8 draws", s.dir)
}

// maxPad bounds the white space a shorter record is padded with; past it
// the file is truncated.
const maxPad = 1 << 10

// overwrite writes data over the kept file f from its start, padded with
// spaces to f's size or cut to its own, and returns the size of the file
// then. It never truncates to zero first: ext4 writes a file out at close
// when it was truncated to zero and written again (auto_da_alloc), a disk
// write a Volatile save must not wait for. A file of unknown size is
// looked at first, and given recordPerm.
func overwrite(f keptFile, data []byte, durability atomicfile.Durability) (int64, error) {
	fd, err := unix.Open(f.path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: f.path, Err: err}
	}
	size := f.size
	if size < 0 {
		size, err = statAndFix(fd)
	}
	if n := int64(len(data)); err == nil && size > n && size-n <= maxPad {
		data = padded(data, size)
	}
	if err == nil {
		err = writeAt0(fd, data)
	}
	if err == nil && size > int64(len(data)) {
		err = unix.Ftruncate(fd, int64(len(data)))
	}
	if err == nil && durability == atomicfile.Durable {
		err = unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", f.path, err)
	}
	return int64(len(data)), nil
}

// statAndFix returns the size of the file open at fd, and gives it
// recordPerm.
func statAndFix(fd int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&0o7777 != recordPerm {
		if err := unix.Fchmod(fd, recordPerm); err != nil {
			return 0, err
		}
	}
	return st.Size, nil
}

// padded is data followed by spaces up to size bytes.
func padded(data []byte, size int64) []byte {
	out := make([]byte, size)
	copy(out, data)
	for i := len(data); i < len(out); i++ {
		out[i] = ' '
	}
	return out
}

func writeAt0(fd int, data []byte) error {
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:], int64(off))
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += n
	}
	return nil
}

// keepOrRemove keeps f for a later save, or removes it when enough are
// kept. A file it cannot remove matches TempGlob: Open removes it later.
func (s *Store[T]) keepOrRemove(f keptFile) {
	if !s.spares.keep(f) {
		_ = removeIfThere(f.path)
	}
}

// removeToSpare takes the record at path out of the store by renaming it
// to a kept file's name, and reports whether it is gone: false when no
// more files are to be kept, or the rename failed, and the caller removes
// it.
func (s *Store[T]) removeToSpare(path string) bool {
	size := s.spares.forget(path)
	if !s.spares.room() {
		return false
	}
	tmp, err := s.spares.name(s.dir)
	if err != nil {
		return false
	}
	// The name is fresh, so os.Rename's check for a directory there is
	// not needed.
	if err := unix.Rename(path, tmp); errors.Is(err, unix.ENOENT) {
		return true // no record: nothing to remove
	} else if err != nil {
		return false
	}
	s.keepOrRemove(keptFile{path: tmp, size: size})
	return true
}

func removeIfThere(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
