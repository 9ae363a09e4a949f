package snapshot

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

// VolumeSnapshotClass parameters CreateSnapshot understands.
const (
	// ParamRepository is the registry repository, REGISTRY/PATH, the
	// snapshot's image is pushed to; without it the snapshot stays on
	// the node.
	ParamRepository = "repository"
	// ParamCompression is the committed layer's compression, zstd (the
	// default) or gzip.
	ParamCompression = "compression"
	// paramPrefix starts the keys csi-snapshotter adds with
	// --extra-create-metadata (csi.storage.k8s.io/volumesnapshot/name,
	// ...); they are accepted and not used.
	paramPrefix = "csi.storage.k8s.io/"
)

// Keys of the secret a push uses (the VolumeSnapshotClass's
// csi.storage.k8s.io/snapshotter-secret-name): username and password, or
// the .dockerconfigjson of a kubernetes.io/dockerconfigjson Secret.
const (
	SecretUsername         = "username"
	SecretPassword         = "password"
	SecretDockerConfigJSON = ".dockerconfigjson"
)

// request is a checked CreateSnapshotRequest.
type request struct {
	name, source string
	compression  layers.Compression
	// repository is the repository to push to, as given (empty: none),
	// and keychain the credentials to push with.
	repository string
	keychain   authn.Keychain
}

// parseCreate checks a CreateSnapshotRequest: everything that can be
// refused before a volume is looked at.
func (s *Server) parseCreate(req *csi.CreateSnapshotRequest) (*request, error) {
	if err := rpc.RequireField("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := rpc.RequireField("source_volume_id", req.GetSourceVolumeId()); err != nil {
		return nil, err
	}
	for field, v := range map[string]string{"name": req.GetName(), "source_volume_id": req.GetSourceVolumeId()} {
		if strings.ContainsRune(v, 0) {
			return nil, status.Errorf(codes.InvalidArgument, "%s must not contain NUL bytes", field)
		}
	}
	r := &request{name: req.GetName(), source: req.GetSourceVolumeId()}
	var unknown []string
	for k := range req.GetParameters() {
		if k != ParamRepository && k != ParamCompression && !strings.HasPrefix(k, paramPrefix) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, status.Errorf(codes.InvalidArgument, "unknown parameters %q: want %s (a registry repository to push the snapshot to) or %s (zstd or gzip)",
			unknown, ParamRepository, ParamCompression)
	}
	var err error
	if r.compression, err = layers.ParseCompression(req.GetParameters()[ParamCompression]); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "parameter %s: %v", ParamCompression, err)
	}
	if repo, ok := req.GetParameters()[ParamRepository]; ok {
		if r.repository, err = checkRepository(repo); err != nil {
			return nil, err
		}
		if r.keychain, err = s.keychain(r.repository, req.GetSecrets()); err != nil {
			return nil, err
		}
	}
	if err := s.checkTopology(r, req.GetAccessibilityRequirements()); err != nil {
		return nil, err
	}
	return r, nil
}

// checkRepository checks the repository parameter and returns it as it is
// written into references: REGISTRY/PATH, at most MaxRepositoryBytes.
func checkRepository(repo string) (string, error) {
	if strings.HasPrefix(repo, source.LayoutPrefix) {
		return "", status.Errorf(codes.InvalidArgument, "parameter %s %q: want a registry repository, REGISTRY/PATH; an OCI layout on one node is no place for a snapshot other nodes restore", ParamRepository, repo)
	}
	r, err := name.NewRepository(repo, name.StrictValidation)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "parameter %s %q: want a fully qualified repository without tag or digest, REGISTRY/PATH (%v)", ParamRepository, repo, err)
	}
	if n := r.Name(); len(n) > MaxRepositoryBytes {
		return "", status.Errorf(codes.InvalidArgument, "parameter %s %q: %d bytes, at most %d fit a snapshot id (%s@sha256:<digest>, 128 bytes)",
			ParamRepository, repo, len(n), MaxRepositoryBytes, n)
	}
	return r.Name(), nil
}

// keychain is what a push to repository authenticates with: the
// secret's credentials, or the node's own without a secret. Errors name
// keys, never values.
func (s *Server) keychain(repository string, secrets map[string]string) (authn.Keychain, error) {
	if len(secrets) == 0 {
		return s.cfg.Source.Keychain, nil // nil: the node's default keychain
	}
	var unknown []string
	for k := range secrets {
		if k != SecretUsername && k != SecretPassword && k != SecretDockerConfigJSON {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, status.Errorf(codes.InvalidArgument, "unknown secret keys %q: want %s and %s, or %s", unknown, SecretUsername, SecretPassword, SecretDockerConfigJSON)
	}
	if doc, ok := secrets[SecretDockerConfigJSON]; ok {
		if _, user := secrets[SecretUsername]; user {
			return nil, status.Errorf(codes.InvalidArgument, "secret has both %s and %s: give one", SecretDockerConfigJSON, SecretUsername)
		}
		kc, err := source.KeychainFromDockerConfigJSON([]byte(doc))
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "secret %s: %v", SecretDockerConfigJSON, err)
		}
		return kc, nil
	}
	user, pass := secrets[SecretUsername], secrets[SecretPassword]
	if user == "" || pass == "" {
		return nil, status.Errorf(codes.InvalidArgument, "secret needs both %s and %s", SecretUsername, SecretPassword)
	}
	reg, err := name.NewRepository(repository, name.StrictValidation)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "parameter %s: %v", ParamRepository, err)
	}
	return registryKeychain{registry: reg.RegistryStr(), auth: authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}, nil
}

// registryKeychain gives one registry's credentials, and none to others.
type registryKeychain struct {
	registry string
	auth     authn.Authenticator
}

func (k registryKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), r)
}

func (k registryKeychain) ResolveContext(_ context.Context, r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.registry {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

// topology is where a snapshot kept on this node is usable.
func (s *Server) topology() *csi.Topology {
	return &csi.Topology{Segments: map[string]string{names.TopologyKey: s.cfg.NodeID}}
}

// checkTopology refuses a node-local snapshot whose requisite topology
// leaves this node out: it cannot be made anywhere else. A pushed one is
// usable everywhere.
func (s *Server) checkTopology(r *request, req *csi.TopologyRequirement) error {
	if r.repository != "" || len(req.GetRequisite()) == 0 {
		return nil
	}
	here := s.topology().GetSegments()
	for _, t := range req.GetRequisite() {
		if covers(t.GetSegments(), here) {
			return nil
		}
	}
	return status.Errorf(codes.ResourceExhausted, "accessibility_requirements: the snapshot is kept on node %s (%s=%s), which no requisite topology includes; give %s to push it to a registry",
		s.cfg.NodeID, names.TopologyKey, s.cfg.NodeID, ParamRepository)
}

// covers reports whether a requested topology segment map includes this
// node's: every key it names that this node has matches, and it names
// the node key.
func covers(want, here map[string]string) bool {
	if _, ok := want[names.TopologyKey]; !ok {
		return false
	}
	for k, v := range want {
		if hv, ok := here[k]; ok && hv != v {
			return false
		}
	}
	return true
}

// differences says how a recorded snapshot differs from what r asks for;
// none means r asks for this snapshot again.
func (rec *snapshotRecord) differences(r *request) []string {
	var diffs []string
	if rec.SourceVolumeID != r.source {
		diffs = append(diffs, fmt.Sprintf("source volume %s, not %s", rec.SourceVolumeID, r.source))
	}
	if rec.Repository != r.repository {
		diffs = append(diffs, fmt.Sprintf("repository %q, not %q", rec.Repository, r.repository))
	}
	if rec.Compression != string(r.compression) {
		diffs = append(diffs, fmt.Sprintf("compression %s, not %s", rec.Compression, r.compression))
	}
	return slices.Clip(diffs)
}
