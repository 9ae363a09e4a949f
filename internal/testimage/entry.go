package testimage

import (
	"archive/tar"
	"path"
	"strings"
	"time"
)

// DefaultModTime is the modification time given to entries that set none,
// so that layer digests do not depend on when a test runs.
var DefaultModTime = time.Date(2020, time.January, 1, 0, 0, 0, 0, time.UTC)

// Entry is one member of a layer tarball.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, ...
	Body     string
	Mode     int64 // permission and special bits; 0 means 0644 for files, 0755 for directories, 0777 for symlinks
	Linkname string
	Uid, Gid int
	ModTime  time.Time // zero means DefaultModTime
	// Xattrs are written as PAX records SCHILY.xattr.<name>, the form
	// Docker and containerd use for extended attributes.
	Xattrs map[string]string
	// Devmajor and Devminor apply to character and block devices.
	Devmajor, Devminor int64
}

// File is a regular file holding body.
func File(name, body string) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Body: body}
}

// Dir is a directory.
func Dir(name string) Entry {
	return Entry{Name: name, Type: tar.TypeDir}
}

// Symlink is a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Linkname: target}
}

// Hardlink is a hard link to target, a path earlier in the same layer.
func Hardlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Linkname: target}
}

// Whiteout deletes name from the layers below: an empty file dir/.wh.base.
func Whiteout(name string) Entry {
	dir, base := path.Split(strings.TrimSuffix(name, "/"))
	return File(dir+".wh."+base, "")
}

// Opaque hides everything below dir in lower layers: dir/.wh..wh..opq.
func Opaque(dir string) Entry {
	return File(path.Join(dir, ".wh..wh..opq"), "")
}

func (e Entry) mode() int64 {
	if e.Mode != 0 {
		return e.Mode
	}
	switch e.Type {
	case tar.TypeDir:
		return 0o755
	case tar.TypeSymlink:
		return 0o777
	default:
		return 0o644
	}
}

func (e Entry) header() *tar.Header {
	name := e.Name
	if e.Type == tar.TypeDir && !strings.HasSuffix(name, "/") {
		// Image builders write directories with a trailing slash.
		name += "/"
	}
	mtime := e.ModTime
	if mtime.IsZero() {
		mtime = DefaultModTime
	}
	h := &tar.Header{
		Typeflag: e.Type,
		Name:     name,
		Linkname: e.Linkname,
		Mode:     e.mode(),
		Uid:      e.Uid,
		Gid:      e.Gid,
		ModTime:  mtime,
		Devmajor: e.Devmajor,
		Devminor: e.Devminor,
	}
	if e.Type == tar.TypeReg {
		h.Size = int64(len(e.Body))
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		h.Format = tar.FormatPAX
	}
	return h
}
