package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/volumeid"
)

const (
	soakOps       = 200
	soakWorkers   = 8
	soakKillEvery = 50
	soakSeedEnv   = "LAYERSET_SOAK_SEED"
)

// TestSoak drives the real plugin the way a busy kubelet would, and then
// some: random publishes, stages, unpublishes, unstages and stats calls
// from several goroutines over a fixed set of volume ids, hostile ids and
// targets mixed in, duplicate calls racing each other, and the plugin
// killed with SIGKILL every ~50 operations. It tracks what kubelet would
// believe of every volume and, once done, tears everything down as kubelet
// would and checks that nothing is left mounted, no inline volume left
// behind, every persistent upper holds what its pods wrote, and none of
// the hostile targets was touched.
//
// The operations are drawn from a seeded generator; the seed is logged and
// LAYERSET_SOAK_SEED repeats it (the interleaving of the goroutines is
// the scheduler's, so a run repeats the same operations, not always in
// the same order).
func TestSoak(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(soakSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", soakSeedEnv, s, err)
		}
	}
	t.Logf("seed %d (repeat with %s=%d)", seed, soakSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	reg := newRegistry(t, false)
	root, dir := t.TempDir(), t.TempDir()
	t.Cleanup(func() { unmountUnder(t, dir, root) })
	s := &soak{t: t, seed: seed, root: root, dir: dir, e: &env{}}
	s.cond = sync.NewCond(&s.mu)
	s.makeFixtures()
	s.p = newPlugin(t, reg, root, writeLayerSets(t, reg.image))
	s.p.start()
	s.cl = s.p.client()
	s.makeVolumes()

	ops := make([]soakOp, soakOps)
	for i := range ops {
		ops[i] = soakOp{
			vol:     rng.IntN(len(s.vols)),
			action:  rng.Float64(),
			hostile: rng.Float64() < 0.25,
			kind:    rng.IntN(1 << 16),
			ro:      rng.Float64() < 0.15,
			dup:     rng.Float64() < 0.15,
		}
	}
	var kills []int
	for k := soakKillEvery; k < soakOps; k += soakKillEvery {
		kills = append(kills, k-10+rng.IntN(21))
	}
	t.Logf("plugin killed at operations %v", kills)

	start := time.Now()
	var next atomic.Int64
	killAt := make(chan int, len(kills))
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				op := int(next.Add(1)) - 1
				if op >= soakOps {
					return
				}
				if slices.Contains(kills, op) {
					killAt <- op
				}
				s.run(op, w, ops[op])
			}
		}()
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	for range kills {
		select {
		case op := <-killAt:
			// Let the operations started around it get into the plugin.
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			s.logf(op, -1, "SIGKILL")
			s.restart()
		case <-workersDone:
		}
	}
	<-workersDone
	t.Logf("%d operations in %v; outcomes %v", soakOps, time.Since(start).Round(time.Millisecond), s.outcomes())

	// Kubelet after one more restart: every target and staging path it
	// ever used is unpublished and unstaged.
	s.logf(soakOps, -1, "SIGKILL (final)")
	s.restart()
	s.teardown()
	s.check()
	if t.Failed() {
		t.Logf("operations:\n%s", s.opLog())
		t.Logf("plugin logs:\n%s", s.p.logs.String())
		t.Logf("seed %d (repeat with %s=%d)", seed, soakSeedEnv, seed)
	}
}

// soakOp is one drawn operation; what it does depends on what kubelet
// believes of its volume when it runs.
type soakOp struct {
	vol     int
	action  float64 // picks the lifecycle step
	hostile bool    // a hostile call instead
	kind    int     // picks the hostile call and its target
	ro      bool    // a read-only publish
	dup     bool    // sent twice at once, as a kubelet retry racing the first
}

// belief is what kubelet would believe of a mount after its last call.
type belief int

const (
	absent      belief = iota // nothing, or unpublished/unstaged
	present                   // the publish or stage succeeded
	uncertain                 // a publish or stage cut short: retried, or torn down
	tearingDown               // an unpublish or unstage cut short: retried until it succeeds
)

type soakBind struct {
	path string
	st   belief
	ro   bool
}

// soakVol is one volume id and what kubelet believes of it; mu is held
// for a whole operation, as kubelet serializes the operations on one
// volume (a dup call aside).
type soakVol struct {
	mu         sync.Mutex
	idx        int
	id         string
	persistent bool
	st         belief // inline: the publish; persistent: the stage

	// inline volumes
	gen    int
	target string
	ro     bool
	wrote  string // what the pod wrote into its volume

	// persistent volumes
	staging string
	binds   []*soakBind
	data    string // what the last pod wrote: the upper's data file

	targets  map[string]bool // every target path ever used
	stagings map[string]bool // every staging path ever used
}

type stray struct{ id, path string }

type soak struct {
	t         *testing.T
	seed      uint64
	p         *plugin
	e         *env // for its request builders
	root, dir string
	vols      []*soakVol

	mu    sync.Mutex
	cond  *sync.Cond
	epoch int // odd while the plugin is down
	cl    csi.NodeClient

	// fixtures: hostile targets that must come out as they went in
	link, linkDest, full, file, tmpfs string

	logMu       sync.Mutex
	log         []string
	codes       map[string]int
	strayPubs   []stray // hostile publishes that succeeded: unpublished at the end
	strayStages []stray
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "h-" + hex.EncodeToString(sum[:20])
}

func (s *soak) makeVolumes() {
	inline := []string{"csi-e0", "csi-e1", "csi-e2", "csi-e3", "csi-e4", "a/b", "../x", strings.Repeat("e", 200), "csi-ü", ".hidden"}
	persistent := []string{"pvc-0", "pvc-1", "pvc-1-init", "pvc-2", "pvc-3", hashID("a/b"), strings.Repeat("p", 200), "pv/../../etc", "pvc-4", "pvc 5"}
	for _, ids := range [][]string{inline, persistent} {
		for _, id := range ids {
			i := len(s.vols)
			s.vols = append(s.vols, &soakVol{
				idx: i, id: id, persistent: ids[0] == persistent[0],
				staging:  filepath.Join(s.dir, "pv", strconv.Itoa(i), "globalmount"),
				targets:  map[string]bool{},
				stagings: map[string]bool{},
			})
		}
	}
}

// makeFixtures makes the hostile targets: a symlink to a directory, a
// directory with a file, a regular file, and a tmpfs of the test's own.
func (s *soak) makeFixtures() {
	t := s.t
	h := filepath.Join(s.dir, "hostile")
	s.link, s.linkDest = filepath.Join(h, "link"), filepath.Join(h, "dest")
	s.full, s.file, s.tmpfs = filepath.Join(h, "full"), filepath.Join(h, "file"), filepath.Join(h, "tmpfs")
	for _, d := range []string{s.linkDest, s.full, s.tmpfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(s.linkDest, s.link); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", s.tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{
		filepath.Join(s.linkDest, "keep"): "dest",
		filepath.Join(s.full, "keep"):     "full",
		filepath.Join(s.tmpfs, "keep"):    "tmpfs",
		s.file:                            "file",
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFixtures reports a hostile target that was changed.
func (s *soak) checkFixtures(after string) {
	t := s.t
	t.Helper()
	if dest, err := os.Readlink(s.link); err != nil || dest != s.linkDest {
		t.Errorf("%s: the symlink %s is %q, %v", after, s.link, dest, err)
	}
	for p, want := range map[string]string{
		filepath.Join(s.linkDest, "keep"): "dest",
		filepath.Join(s.full, "keep"):     "full",
		filepath.Join(s.tmpfs, "keep"):    "tmpfs",
		s.file:                            "file",
	} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s: %s reads %q, %v; want %q", after, p, got, err, want)
		}
	}
	if m, err := isMounted(s.tmpfs); err != nil || !m {
		t.Errorf("%s: the test's tmpfs at %s is not mounted any more (%v)", after, s.tmpfs, err)
	}
}

// restart kills the plugin with SIGKILL and starts it again; calls wait
// meanwhile, and those in flight fail.
func (s *soak) restart() {
	s.mu.Lock()
	s.epoch++
	s.mu.Unlock()
	s.p.kill()
	s.p.start()
	cl := s.p.client()
	s.mu.Lock()
	s.cl = cl
	s.epoch++
	s.cond.Broadcast()
	s.mu.Unlock()
}

// current waits until the plugin serves and returns its client.
func (s *soak) current() (csi.NodeClient, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.epoch%2 == 1 {
		s.cond.Wait()
	}
	return s.cl, s.epoch
}

func (s *soak) epochNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

func (s *soak) logf(op, worker int, format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.log = append(s.log, fmt.Sprintf("%3d w%d  %s", op, worker, fmt.Sprintf(format, args...)))
}

func (s *soak) opLog() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return strings.Join(s.log, "\n")
}

func (s *soak) outcomes() map[string]int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return maps.Clone(s.codes)
}

// result is what one (possibly doubled) call came to.
type result int

const (
	done    result = iota // succeeded
	refused               // failed, nothing done (or a code the test flagged)
	unknown               // failed as the plugin was killed: may or may not have happened
)

// call is one CSI call of operation op. ok are the codes other than OK
// that are acceptable answers; Aborted is (another call for the volume is
// in flight), and Unavailable, DeadlineExceeded and Canceled are when the
// plugin was killed during the call. Anything else fails the test.
type call struct {
	op, worker int
	what       string // method
	id, path   string
	req        any
	ok         []codes.Code
	do         func(ctx context.Context, cl csi.NodeClient) error
}

// do sends the call once, or with dup twice at once, and tells what the
// calls came to together: done if either succeeded.
func (s *soak) do(c call, dup bool) result {
	n := 1
	if dup {
		n = 2
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = s.send(c, i > 0)
		}()
	}
	wg.Wait()
	switch {
	case slices.Contains(res, done):
		return done
	case slices.Contains(res, unknown):
		return unknown
	}
	return refused
}

func (s *soak) send(c call, second bool) result {
	cl, epoch := s.current()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.do(ctx, cl)
	code := status.Code(err)
	killed := s.epochNow() != epoch
	tag := ""
	if second {
		tag = " (dup)"
	}
	if err != nil {
		s.logf(c.op, c.worker, "%s%s %q %s: %v%s", c.what, tag, c.id, c.path, code, map[bool]string{true: " [killed]"}[killed])
	} else {
		s.logf(c.op, c.worker, "%s%s %q %s: OK", c.what, tag, c.id, c.path)
	}
	s.logMu.Lock()
	if s.codes == nil {
		s.codes = map[string]int{}
	}
	s.codes[code.String()]++
	s.logMu.Unlock()
	switch {
	case err == nil:
		return done
	case code == codes.Aborted || slices.Contains(c.ok, code):
		return refused
	case killed && (code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled):
		return unknown
	}
	s.t.Errorf("op %d: %s of volume %q at %s: %v\nrequest: %v", c.op, c.what, c.id, c.path, err, c.req)
	return refused
}

// The calls.

func (s *soak) publish(op, w int, req *csi.NodePublishVolumeRequest, ok ...codes.Code) call {
	return call{op: op, worker: w, what: "NodePublishVolume", id: req.VolumeId, path: req.TargetPath, req: req, ok: ok,
		do: func(ctx context.Context, cl csi.NodeClient) error {
			_, err := cl.NodePublishVolume(ctx, req)
			return err
		}}
}

func (s *soak) unpublish(op, w int, id, target string, ok ...codes.Code) call {
	req := &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}
	return call{op: op, worker: w, what: "NodeUnpublishVolume", id: id, path: target, req: req, ok: ok,
		do: func(ctx context.Context, cl csi.NodeClient) error {
			_, err := cl.NodeUnpublishVolume(ctx, req)
			return err
		}}
}

func (s *soak) stage(op, w int, id, staging string, ok ...codes.Code) call {
	req := s.e.stageRequest(id, staging)
	return call{op: op, worker: w, what: "NodeStageVolume", id: id, path: staging, req: req, ok: ok,
		do: func(ctx context.Context, cl csi.NodeClient) error { _, err := cl.NodeStageVolume(ctx, req); return err }}
}

func (s *soak) unstage(op, w int, id, staging string, ok ...codes.Code) call {
	req := &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}
	return call{op: op, worker: w, what: "NodeUnstageVolume", id: id, path: staging, req: req, ok: ok,
		do: func(ctx context.Context, cl csi.NodeClient) error {
			_, err := cl.NodeUnstageVolume(ctx, req)
			return err
		}}
}

// stats asks for the volume's stats at path; with want, the answer must
// count at least its bytes.
func (s *soak) stats(op, w int, id, path, want string, ok ...codes.Code) call {
	req := &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: path}
	return call{op: op, worker: w, what: "NodeGetVolumeStats", id: id, path: path, req: req, ok: ok,
		do: func(ctx context.Context, cl csi.NodeClient) error {
			resp, err := cl.NodeGetVolumeStats(ctx, req)
			if err == nil && want != "" {
				for _, u := range resp.GetUsage() {
					if u.GetUnit() == csi.VolumeUsage_BYTES && u.GetUsed() < int64(len(want)) {
						s.t.Errorf("op %d: stats of %q at %s: %d bytes used, but its pod wrote %d", op, id, path, u.GetUsed(), len(want))
					}
				}
			}
			return err
		}}
}

// podWrite is the pod writing its data file into a volume it got
// published; it returns what it wrote, "" for a read-only volume.
func (s *soak) podWrite(op int, v *soakVol, target string, ro bool) string {
	content := fmt.Sprintf("volume %q written by the pod of operation %d (seed %d)\n", v.id, op, s.seed)
	err := os.WriteFile(filepath.Join(target, "data"), []byte(content), 0o644)
	switch {
	case ro && err == nil:
		s.t.Errorf("op %d: volume %q published read-only at %s takes writes", op, v.id, target)
		return ""
	case ro && !errors.Is(err, unix.EROFS):
		s.t.Errorf("op %d: write into read-only volume %q at %s: %v, want EROFS", op, v.id, target, err)
		return ""
	case ro:
		return ""
	case err != nil:
		s.t.Errorf("op %d: the pod cannot write into volume %q at %s: %v", op, v.id, target, err)
		return ""
	}
	return content
}

// podRead is the pod finding its data file in the volume.
func (s *soak) podRead(op int, v *soakVol, target, want string) {
	if want == "" {
		return
	}
	if got, err := os.ReadFile(filepath.Join(target, "data")); err != nil || string(got) != want {
		s.t.Errorf("op %d: the data file of volume %q at %s reads %q, %v; want %q", op, v.id, target, got, err, want)
	}
}

func mkParent(t *testing.T, p string) {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Error(err)
	}
}

// run runs operation op on its volume.
func (s *soak) run(op, w int, o soakOp) {
	v := s.vols[o.vol]
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case o.hostile:
		s.hostile(op, w, v, o)
	case v.persistent:
		s.persistentStep(op, w, v, o)
	default:
		s.inlineStep(op, w, v, o)
	}
}

func (s *soak) inlineStep(op, w int, v *soakVol, o soakOp) {
	switch {
	case v.st == absent:
		// A new pod.
		v.gen++
		v.target = filepath.Join(s.dir, "pods", fmt.Sprintf("e%d-%d", v.idx, v.gen), "mount")
		mkParent(s.t, v.target)
		v.targets[v.target], v.ro, v.wrote = true, o.ro, ""
		s.publishInline(op, w, v, o.dup, false)
	case v.st == tearingDown, v.st == uncertain && o.action < 0.5, v.st == present && o.action < 0.5:
		s.unpublishInline(op, w, v, o.dup)
	case v.st == uncertain:
		s.publishInline(op, w, v, o.dup, false)
	case o.action < 0.7:
		s.publishInline(op, w, v, o.dup, true)
	default:
		s.do(s.stats(op, w, v.id, v.target, v.wrote), false)
	}
}

func (s *soak) publishInline(op, w int, v *soakVol, dup, again bool) {
	req := s.e.ephemeralRequest(v.id, v.target)
	req.Readonly = v.ro
	switch s.do(s.publish(op, w, req), dup) {
	case done:
		if v.st != present {
			v.st = present
			v.wrote = s.podWrite(op, v, v.target, v.ro)
		} else {
			s.podRead(op, v, v.target, v.wrote)
		}
	case unknown:
		if !again {
			v.st = uncertain
		}
	}
}

func (s *soak) unpublishInline(op, w int, v *soakVol, dup bool) {
	if v.st == present {
		s.podRead(op, v, v.target, v.wrote)
	}
	switch s.do(s.unpublish(op, w, v.id, v.target), dup) {
	case done:
		v.st = absent
		s.gone(op, v, v.target)
	case unknown:
		v.st = tearingDown
	}
}

// gone checks that a target the plugin unpublished is no mount any more.
func (s *soak) gone(op int, v *soakVol, path string) {
	if m, err := isMounted(path); err != nil || m {
		s.t.Errorf("op %d: %s of volume %q is still mounted (%v) after it was released", op, path, v.id, err)
	}
}

func (s *soak) persistentStep(op, w int, v *soakVol, o soakOp) {
	var live, pending []*soakBind
	for _, b := range v.binds {
		switch b.st {
		case present:
			live = append(live, b)
		case uncertain, tearingDown:
			pending = append(pending, b)
		}
	}
	pick := func(bs []*soakBind) *soakBind { return bs[o.kind%len(bs)] }
	switch {
	case v.st == absent, v.st == uncertain && o.action < 0.6:
		s.stageVolume(op, w, v, o.dup, false)
	case v.st == uncertain, v.st == tearingDown:
		s.unstageVolume(op, w, v, o.dup)
	case len(pending) > 0:
		b := pick(pending)
		if b.st == uncertain && o.action < 0.5 {
			s.publishBind(op, w, v, b, o.dup, false)
		} else {
			s.unpublishBind(op, w, v, b, o.dup)
		}
	case o.action < 0.3 && len(live) < 3:
		b := &soakBind{path: filepath.Join(s.dir, "pods", fmt.Sprintf("p%d-%d", v.idx, op), "mount"), ro: o.ro}
		mkParent(s.t, b.path)
		v.binds = append(v.binds, b)
		v.targets[b.path] = true
		s.publishBind(op, w, v, b, o.dup, false)
	case o.action < 0.55 && len(live) > 0:
		s.unpublishBind(op, w, v, pick(live), o.dup)
	case o.action < 0.65 && len(live) == 0:
		s.unstageVolume(op, w, v, o.dup)
	case o.action < 0.7 && len(live) > 0:
		s.publishBind(op, w, v, pick(live), o.dup, true)
	case o.action < 0.8:
		s.stageVolume(op, w, v, o.dup, true)
	case len(live) > 0 && o.action < 0.9:
		s.do(s.stats(op, w, v.id, pick(live).path, v.data), false)
	default:
		s.do(s.stats(op, w, v.id, v.staging, v.data), false)
	}
}

func (s *soak) stageVolume(op, w int, v *soakVol, dup, again bool) {
	mkParent(s.t, v.staging)
	v.stagings[v.staging] = true
	switch s.do(s.stage(op, w, v.id, v.staging), dup) {
	case done:
		v.st = present
		// The upper is kept across unstaging, restarts and kills.
		s.podRead(op, v, v.staging, v.data)
	case unknown:
		if !again {
			v.st = uncertain
		}
	}
}

func (s *soak) unstageVolume(op, w int, v *soakVol, dup bool) {
	switch s.do(s.unstage(op, w, v.id, v.staging), dup) {
	case done:
		v.st = absent
		v.binds = slices.DeleteFunc(v.binds, func(b *soakBind) bool { return b.st == absent })
		s.gone(op, v, v.staging)
	case unknown:
		v.st = tearingDown
	}
}

func (s *soak) publishBind(op, w int, v *soakVol, b *soakBind, dup, again bool) {
	req := s.e.publishRequest(v.id, v.staging, b.path, b.ro)
	switch s.do(s.publish(op, w, req), dup) {
	case done:
		s.podRead(op, v, b.path, v.data)
		if b.st != present {
			b.st = present
			if data := s.podWrite(op, v, b.path, b.ro); data != "" {
				v.data = data
			}
		}
	case unknown:
		if !again {
			b.st = uncertain
		}
	}
}

func (s *soak) unpublishBind(op, w int, v *soakVol, b *soakBind, dup bool) {
	if b.st == present {
		s.podRead(op, v, b.path, v.data)
	}
	switch s.do(s.unpublish(op, w, v.id, b.path), dup) {
	case done:
		b.st = absent
		s.gone(op, v, b.path)
	case unknown:
		b.st = tearingDown
	}
}

// hostile sends a call kubelet would not, or one at a target no volume
// may be mounted on. It must be refused with a code a caller acts on, or
// (a release of something the node does not know) succeed without
// touching what is there.
func (s *soak) hostile(op, w int, v *soakVol, o soakOp) {
	t := s.t
	name := "vol-" + volumeid.Name(v.id)
	bad := []string{
		s.link, filepath.Join(s.link, "sub"), s.full, s.file, s.tmpfs, s.dir, "/",
		s.root, filepath.Join(s.root, "csi"), filepath.Join(s.root, "overlay2"),
		filepath.Join(s.root, "overlay2", "l"), filepath.Join(s.root, "overlay2", ".staging"),
		filepath.Join(s.root, "overlay2", name, "diff"), filepath.Join(s.root, "overlay2", name, "work"),
		filepath.Join(s.root, "overlay2", name+"-init"),
	}
	target := bad[o.kind%len(bad)]
	refusals := []codes.Code{codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound}
	// release checks, after a release of a path the node has no business
	// with, that the path is as it was.
	release := func(c call) {
		existed := exists(target)
		s.do(c, false)
		if existed && !exists(target) {
			t.Errorf("op %d: %s of volume %q at %s deleted it", op, c.what, v.id, target)
		}
		s.checkFixtures(fmt.Sprintf("op %d: after %s of volume %q at %s", op, c.what, v.id, target))
	}
	mustRefuse := func(c call, stage bool) {
		if s.do(c, false) == done {
			t.Errorf("op %d: %s of volume %q at %s succeeded; it must be refused\nrequest: %v", op, c.what, v.id, c.path, c.req)
			s.logMu.Lock()
			if stage {
				s.strayStages = append(s.strayStages, stray{v.id, c.path})
			} else {
				s.strayPubs = append(s.strayPubs, stray{v.id, c.path})
			}
			s.logMu.Unlock()
		}
		s.checkFixtures(fmt.Sprintf("op %d: after %s of volume %q at %s", op, c.what, v.id, c.path))
	}
	publishReq := func(target string) *csi.NodePublishVolumeRequest {
		if v.persistent {
			return s.e.publishRequest(v.id, v.staging, target, false)
		}
		return s.e.ephemeralRequest(v.id, target)
	}
	fresh := filepath.Join(s.dir, "pods", fmt.Sprintf("x%d-%d", v.idx, op), "mount")

	switch (o.kind / len(bad)) % 8 {
	case 0: // a publish at a target no volume may be mounted on
		mustRefuse(s.publish(op, w, publishReq(target), refusals...), false)
	case 1: // a stage there
		mustRefuse(s.stage(op, w, v.id, target, refusals...), true)
	case 2: // releases of paths the node has no record of at them
		release(s.unpublish(op, w, v.id, target, refusals...))
	case 3:
		release(s.unstage(op, w, v.id, target, refusals...))
	case 4: // stats of a path that is not the volume's
		if s.do(s.stats(op, w, v.id, target, "", refusals...), false) == done {
			t.Errorf("op %d: stats of volume %q at %s, which is not its path, answered", op, v.id, target)
		}
	case 5: // the other kind of call for a volume the node has
		switch {
		case !v.persistent && v.st == present:
			mkParent(t, fresh)
			mustRefuse(s.stage(op, w, v.id, fresh, codes.AlreadyExists), true)
		case v.persistent && v.st == present:
			mkParent(t, fresh)
			mustRefuse(s.publish(op, w, s.e.ephemeralRequest(v.id, fresh), codes.AlreadyExists), false)
		default: // a publish of a volume that is not staged, or not its own
			mkParent(t, fresh)
			mustRefuse(s.publish(op, w, s.e.publishRequest(v.id, filepath.Join(s.dir, "pv", "none"), fresh, false), codes.FailedPrecondition), false)
		}
	case 6: // a path of the volume given to the wrong call
		switch {
		case !v.persistent && v.st == present:
			s.do(s.unstage(op, w, v.id, v.target, codes.InvalidArgument), false)
			s.podRead(op, v, v.target, v.wrote)
		case v.persistent && v.st == present && o.action < 0.5:
			s.do(s.unpublish(op, w, v.id, v.staging, codes.InvalidArgument), false)
			s.podRead(op, v, v.staging, v.data)
		case v.persistent && v.st == present:
			mustRefuse(s.publish(op, w, s.e.publishRequest(v.id, v.staging, v.staging, false), codes.InvalidArgument), false)
		default:
			release(s.unpublish(op, w, v.id, target, refusals...))
		}
	case 7: // a second target or staging path for a volume the node has
		mkParent(t, fresh)
		switch {
		case !v.persistent && v.st == present:
			mustRefuse(s.publish(op, w, s.e.ephemeralRequest(v.id, fresh), codes.AlreadyExists), false)
		case v.persistent && v.st == present:
			mustRefuse(s.stage(op, w, v.id, fresh, codes.AlreadyExists), true)
		case v.persistent:
			// Not staged, or not surely: a publish from a staging path
			// that is not the volume's.
			mustRefuse(s.publish(op, w, s.e.publishRequest(v.id, fresh+"-staging", fresh, false), codes.FailedPrecondition), false)
		default:
			s.do(s.stats(op, w, v.id, fresh, "", codes.NotFound), false)
		}
	}
}

// releaseAll retries a release until it is not Aborted.
func (s *soak) releaseAll(c call) {
	for range 50 {
		cl, _ := s.current()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.do(ctx, cl)
		cancel()
		if status.Code(err) == codes.Aborted {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			s.t.Errorf("teardown: %s of volume %q at %s: %v\nrequest: %v", c.what, c.id, c.path, err, c.req)
		}
		s.logf(soakOps, -1, "%s %q %s: %v", c.what, c.id, c.path, status.Code(err))
		return
	}
	s.t.Errorf("teardown: %s of volume %q at %s: still Aborted", c.what, c.id, c.path)
}

// teardown is kubelet releasing everything it ever asked for: every pod
// is gone and every PV released.
func (s *soak) teardown() {
	for _, v := range s.vols {
		// The mounts kubelet believes in survived the kills, data and all.
		if !v.persistent && v.st == present {
			s.podRead(soakOps, v, v.target, v.wrote)
		}
		for _, b := range v.binds {
			if b.st == present {
				s.podRead(soakOps, v, b.path, v.data)
			}
		}
		for _, target := range slices.Sorted(maps.Keys(v.targets)) {
			s.releaseAll(s.unpublish(soakOps, -1, v.id, target))
		}
		for _, staging := range slices.Sorted(maps.Keys(v.stagings)) {
			s.releaseAll(s.unstage(soakOps, -1, v.id, staging))
		}
	}
	for _, p := range s.strayPubs {
		s.releaseAll(s.unpublish(soakOps, -1, p.id, p.path))
	}
	for _, p := range s.strayStages {
		s.releaseAll(s.unstage(soakOps, -1, p.id, p.path))
	}
}

// check is the state of the node once kubelet has released everything.
func (s *soak) check() {
	t := s.t
	if m := slices.DeleteFunc(mountsUnder(t, s.dir, s.root), func(p string) bool { return p == s.tmpfs }); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	for _, v := range s.vols {
		for p := range v.targets {
			if exists(p) {
				t.Errorf("target %s of volume %q left", p, v.id)
			}
		}
		for p := range v.stagings {
			if exists(p) {
				t.Errorf("staging path %s of volume %q left", p, v.id)
			}
		}
	}

	// Only persistent volumes keep directories in the store.
	kept := map[string]bool{}
	for _, v := range s.vols {
		if v.persistent {
			kept["vol-"+volumeid.Name(v.id)] = true
			kept["vol-"+volumeid.Name(v.id)+"-init"] = true
		}
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "overlay2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "vol-") && !kept[e.Name()] {
			t.Errorf("volume directory %s left in the store; no persistent volume has that name", e.Name())
		}
	}
	for _, v := range s.vols {
		if !v.persistent && exists(filepath.Join(s.root, "overlay2", "vol-"+volumeid.Name(v.id))) {
			t.Errorf("directory of inline volume %q left", v.id)
		}
	}

	// Only persistent volumes keep records.
	recs, err := filepath.Glob(filepath.Join(s.root, "csi", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range recs {
		var rec struct {
			ID   string `json:"id"`
			Kind string `json:"kind"`
		}
		b, err := os.ReadFile(p)
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.Kind != string(kindPersistent) {
			t.Errorf("node record %s left: %s (%v)", filepath.Base(p), b, err)
		}
	}

	// Every persistent upper holds what its last pod wrote.
	written := 0
	for _, v := range s.vols {
		if !v.persistent || v.data == "" {
			continue
		}
		written++
		p := filepath.Join(s.root, "overlay2", "vol-"+volumeid.Name(v.id), "diff", "data")
		if got, err := os.ReadFile(p); err != nil || string(got) != v.data {
			t.Errorf("upper of persistent volume %q: %s reads %q, %v; want %q", v.id, p, got, err, v.data)
		}
	}
	s.checkFixtures("after the teardown")
	t.Logf("%d persistent volumes hold data", written)
}
