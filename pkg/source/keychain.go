package source

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// MultiKeychain tries keychains in order and uses the first that has
// credentials for a registry.
func MultiKeychain(k ...authn.Keychain) authn.Keychain {
	return authn.NewMultiKeychain(k...)
}

// KeychainFromDockerConfigJSON builds a keychain from .dockerconfigjson
// documents, the content of kubernetes.io/dockerconfigjson Secrets:
//
//	{"auths": {"registry.example.com": {"auth": "base64(user:password)"}}}
//
// Each entry holds "auth", or "username" and "password" ("auth" wins when
// both are present), or an "identitytoken" or "registrytoken". Keys match
// as the kubelet matches them: an optional http(s):// scheme and /v1/ or
// /v2/ suffix are ignored, a port must match exactly, labels of the host
// may be globs ("*.example.com"), and a path ("registry.example.com/team")
// limits the entry to repositories below it.
//
// When several entries match a repository the most specific wins: the
// longest path, then a literal host over a glob, then the earlier document
// and key order. Unlike the kubelet, which tries each matching credential
// in turn until a pull succeeds, one credential is chosen.
//
// The documents are untrusted: errors name the document and key at fault
// but never echo credentials.
func KeychainFromDockerConfigJSON(data ...[]byte) (authn.Keychain, error) {
	var kc dockerKeychain
	for i, doc := range data {
		var cfg struct {
			Auths *orderedAuths `json:"auths"`
		}
		if err := json.Unmarshal(doc, &cfg); err != nil {
			return nil, fmt.Errorf("docker config %d: not valid JSON: %w", i, redactJSONError(err))
		}
		if cfg.Auths == nil {
			return nil, fmt.Errorf("docker config %d: no \"auths\" object; want a .dockerconfigjson document, not a legacy .dockercfg", i)
		}
		for _, e := range *cfg.Auths {
			k, err := parseAuthKey(e.key)
			if err != nil {
				return nil, fmt.Errorf("docker config %d: key %q: %w", i, e.key, err)
			}
			ac, err := e.value.config()
			if err != nil {
				return nil, fmt.Errorf("docker config %d: key %q: %w", i, e.key, err)
			}
			kc = append(kc, credential{authKey: k, config: ac, order: len(kc)})
		}
	}
	// Most specific first; order breaks ties so the result is stable.
	slices.SortStableFunc(kc, func(a, b credential) int {
		if d := len(b.path) - len(a.path); d != 0 {
			return d
		}
		if a.glob != b.glob {
			if a.glob {
				return 1
			}
			return -1
		}
		return a.order - b.order
	})
	return kc, nil
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

func (a dockerAuth) config() (authn.AuthConfig, error) {
	ac := authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth == "" {
		return ac, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
	if err != nil {
		return authn.AuthConfig{}, fmt.Errorf("\"auth\" is not valid base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return authn.AuthConfig{}, fmt.Errorf("\"auth\" does not decode to USER:PASSWORD")
	}
	ac.Username, ac.Password = user, pass
	return ac, nil
}

// authKey is a parsed "auths" key: host[:port] with optional glob labels,
// and an optional repository path prefix.
type authKey struct {
	host, port string
	path       string
	glob       bool
}

var dockerHubAliases = map[string]bool{
	"docker.io":            true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// dockerHub is the registry name go-containerregistry gives Docker Hub.
const dockerHub = "index.docker.io"

func parseAuthKey(key string) (authKey, error) {
	s := strings.TrimSpace(key)
	if i := strings.Index(s, "://"); i >= 0 {
		switch strings.ToLower(s[:i]) {
		case "http", "https":
			s = s[i+3:]
		default:
			return authKey{}, fmt.Errorf("scheme %q; want none, http:// or https://", s[:i])
		}
	}
	hostport, p, _ := strings.Cut(s, "/")
	p = strings.Trim(p, "/")
	// docker login wrote https://index.docker.io/v1/; the API version is no
	// part of any repository's name.
	if p == "v1" || p == "v2" || strings.HasPrefix(p, "v1/") || strings.HasPrefix(p, "v2/") {
		p = strings.Trim(p[2:], "/")
	}
	host, port := hostport, ""
	if h, pt, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, pt
	}
	host = strings.ToLower(host)
	if host == "" {
		return authKey{}, fmt.Errorf("no registry host")
	}
	if dockerHubAliases[host] && port == "" {
		host = dockerHub
	}
	k := authKey{host: host, port: port, path: p, glob: strings.ContainsAny(host, "*?[")}
	if k.glob {
		// Reject malformed patterns now, not silently at match time.
		for _, label := range strings.Split(host, ".") {
			if _, err := path.Match(label, ""); err != nil {
				return authKey{}, fmt.Errorf("bad host pattern: %w", err)
			}
		}
	}
	return k, nil
}

// matches reports whether k covers repository repo ("path/name") on
// registry regHost ("host[:port]").
func (k authKey) matches(regHost, repo string) bool {
	host, port := regHost, ""
	if h, p, err := net.SplitHostPort(regHost); err == nil {
		host, port = h, p
	}
	host = strings.ToLower(host)
	if port != k.port {
		return false
	}
	if k.glob {
		want, got := strings.Split(k.host, "."), strings.Split(host, ".")
		if len(want) != len(got) {
			return false
		}
		for i := range want {
			if ok, _ := path.Match(want[i], got[i]); !ok {
				return false
			}
		}
	} else if k.host != host {
		return false
	}
	return k.path == "" || repo == k.path || strings.HasPrefix(repo, k.path+"/")
}

type credential struct {
	authKey
	config authn.AuthConfig
	order  int
}

// dockerKeychain is sorted most specific first.
type dockerKeychain []credential

func (kc dockerKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	reg := target.RegistryStr()
	repo := strings.TrimPrefix(strings.TrimPrefix(target.String(), reg), "/")
	for _, c := range kc {
		if c.matches(reg, repo) {
			return authn.FromConfig(c.config), nil
		}
	}
	return authn.Anonymous, nil
}

// orderedAuths keeps "auths" in document order, which breaks ties between
// equally specific keys; a Go map would make the choice random.
type orderedAuths []struct {
	key   string
	value dockerAuth
}

func (o *orderedAuths) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("\"auths\" is not an object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var v dockerAuth
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("\"auths\" entry %q: %w", key, redactJSONError(err))
		}
		*o = append(*o, struct {
			key   string
			value dockerAuth
		}{key, v})
	}
	_, err = dec.Token()
	return err
}

// redactJSONError drops the input that encoding/json quotes in its errors
// (a number's digits, the offending character); in a docker config that
// input may be part of a password.
func redactJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		kind, _, _ := strings.Cut(te.Value, " ")
		return fmt.Errorf("field %q is a JSON %s, want %s", te.Field, kind, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("syntax error at byte %d", se.Offset)
	}
	return err
}
