package source

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// userFor resolves repo ("host/path") and returns the username chosen, or
// "" for anonymous.
func userFor(t testing.TB, kc authn.Keychain, repo string) string {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(r)
	if err != nil {
		t.Fatal(err)
	}
	if a == authn.Anonymous {
		return ""
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Username
}

func TestKeychainMatching(t *testing.T) {
	doc1 := `{"auths":{
		"registry.example.com":            {"auth":"` + b64("host:pw") + `"},
		"registry.example.com/team":       {"auth":"` + b64("team:pw") + `"},
		"https://registry.example.com/team/app/": {"username":"app","password":"pw"},
		"*.example.org":                   {"auth":"` + b64("glob:pw") + `"},
		"mirror.example.org":              {"auth":"` + b64("literal:pw") + `"},
		"registry.example.com:5000":       {"auth":"` + b64("port:pw") + `"},
		"https://index.docker.io/v1/":     {"auth":"` + b64("hub:pw") + `"},
		"tokens.example.com":              {"identitytoken":"tok"}
	}}`
	doc2 := `{"auths":{
		"registry.example.com":            {"auth":"` + b64("second:pw") + `"},
		"other.example.net":               {"auth":"` + b64("other:pass:with:colons") + `"}
	}}`
	kc, err := KeychainFromDockerConfigJSON([]byte(doc1), []byte(doc2))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ repo, user string }{
		{"registry.example.com/app", "host"},
		{"registry.example.com/team/x", "team"},
		{"registry.example.com/teamx/x", "host"}, // path prefixes match whole components
		{"registry.example.com/team/app", "app"},
		{"registry.example.com/team/app/sub", "app"},
		{"REGISTRY.example.com/app", "host"},
		{"mirror.example.org/x", "literal"}, // a literal host beats a glob
		{"cdn.example.org/x", "glob"},
		{"a.cdn.example.org/x", ""}, // a glob label spans one label only
		{"registry.example.com:5000/x", "port"},
		{"registry.example.com:5001/x", ""},
		{"docker.io/library/busybox", "hub"},
		{"other.example.net/x", "other"},
		{"unknown.example/x", ""},
	} {
		if got := userFor(t, kc, tc.repo); got != tc.user {
			t.Errorf("%s: user %q, want %q", tc.repo, got, tc.user)
		}
	}

	r, _ := name.NewRepository("other.example.net/x")
	a, _ := kc.Resolve(r)
	if cfg, _ := a.Authorization(); cfg.Password != "pass:with:colons" {
		t.Errorf("password %q: only the first ':' separates user from password", cfg.Password)
	}
	r, _ = name.NewRepository("tokens.example.com/x")
	a, _ = kc.Resolve(r)
	if cfg, _ := a.Authorization(); cfg.IdentityToken != "tok" {
		t.Errorf("identity token %q, want tok", cfg.IdentityToken)
	}
}

func TestKeychainFirstDocumentWinsTies(t *testing.T) {
	one := `{"auths":{"r.example":{"auth":"` + b64("one:x") + `"}}}`
	two := `{"auths":{"r.example":{"auth":"` + b64("two:x") + `"}}}`
	for _, order := range [][]string{{one, two}, {two, one}} {
		kc, err := KeychainFromDockerConfigJSON([]byte(order[0]), []byte(order[1]))
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Split(strings.TrimPrefix(order[0], `{"auths":{"r.example":{"auth":"`), `"`)[0]
		wantUser, _ := base64.StdEncoding.DecodeString(want)
		if got := userFor(t, kc, "r.example/x"); got+":x" != string(wantUser) {
			t.Errorf("user %q, want the first document's %q", got, wantUser)
		}
	}
}

func TestKeychainErrors(t *testing.T) {
	const secret = "hunter2hunter2"
	for _, tc := range []struct{ name, doc, want string }{
		{"not json", `{"auths":`, "not valid JSON"},
		{"legacy dockercfg", `{"r.example":{"auth":"eDp5"}}`, "legacy .dockercfg"},
		{"auths not object", `{"auths":[1]}`, "not an object"},
		{"bad base64", `{"auths":{"r.example":{"auth":"` + secret + `!"}}}`, `key "r.example": "auth" is not valid base64`},
		{"no colon", `{"auths":{"r.example":{"auth":"` + b64(secret) + `"}}}`, "USER:PASSWORD"},
		{"password as number", `{"auths":{"r.example":{"password":12345678}}}`, `is a JSON number, want string`},
		{"bad scheme", `{"auths":{"ftp://r.example":{}}}`, `scheme "ftp"`},
		{"no host", `{"auths":{"https:///x":{}}}`, "no registry host"},
		{"bad glob", `{"auths":{"[.example":{}}}`, "bad host pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := KeychainFromDockerConfigJSON([]byte(`{"auths":{}}`), []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "docker config 1") {
				t.Fatalf("error %v, want one about docker config 1 containing %q", err, tc.want)
			}
			for _, leak := range []string{secret, "12345678", b64(secret)} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("error %q echoes credential material %q", err, leak)
				}
			}
		})
	}
}

func TestMultiKeychain(t *testing.T) {
	a, _ := KeychainFromDockerConfigJSON([]byte(`{"auths":{"a.example":{"auth":"` + b64("a:x") + `"}}}`))
	b, _ := KeychainFromDockerConfigJSON([]byte(`{"auths":{"a.example":{"auth":"` + b64("b:x") + `"},"b.example":{"auth":"` + b64("b:x") + `"}}}`))
	kc := MultiKeychain(a, b)
	if got := userFor(t, kc, "a.example/x"); got != "a" {
		t.Errorf("a.example: %q, want the first keychain's a", got)
	}
	if got := userFor(t, kc, "b.example/x"); got != "b" {
		t.Errorf("b.example: %q, want b", got)
	}
}

// FuzzKeychainFromDockerConfigJSON: Secrets are written by users.
func FuzzKeychainFromDockerConfigJSON(f *testing.F) {
	f.Add([]byte(`{"auths":{"r.example":{"auth":"` + b64("u:p") + `"}}}`))
	f.Add([]byte(`{"auths":{"*.example:5000/a/b":{"username":"u","password":"p"},"https://index.docker.io/v1/":{}}}`))
	f.Add([]byte(`{"auths":null}`))
	f.Add([]byte(`{"auths":{"":{"auth":""}}}`))
	targets := []string{"r.example/a", "x.example:5000/a/b/c", "index.docker.io/library/x"}
	f.Fuzz(func(t *testing.T, doc []byte) {
		kc, err := KeychainFromDockerConfigJSON(doc)
		if err != nil {
			return
		}
		for _, tr := range targets {
			r, _ := name.NewRepository(tr)
			a, err := kc.Resolve(r)
			if err != nil {
				t.Fatalf("Resolve(%s): %v", tr, err)
			}
			if _, err := a.Authorization(); err != nil {
				t.Fatalf("Authorization for %s: %v", tr, err)
			}
		}
	})
}

// FuzzDockerConfigRoundTrip: whatever credentials a user stores for a host
// come back for that host's repositories, byte for byte.
func FuzzDockerConfigRoundTrip(f *testing.F) {
	f.Add("user", "pass:word", "registry.example.com")
	f.Add("", "", "localhost:5000")
	f.Fuzz(func(t *testing.T, user, pass, host string) {
		if strings.Contains(user, ":") {
			return // not representable in "auth"
		}
		reg, err := name.NewRegistry(host, name.StrictValidation)
		if err != nil || reg.RegistryStr() != host || strings.ContainsAny(host, "*?[\\") {
			return
		}
		if h, _, err := net.SplitHostPort(host); err == nil && h == "" {
			return // name accepts ":port" as a registry; it names no host
		}
		doc, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": b64(user + ":" + pass)}}})
		if err != nil {
			return
		}
		kc, err := KeychainFromDockerConfigJSON(doc)
		if err != nil {
			t.Fatalf("config for host %q rejected: %v", host, err)
		}
		a, err := kc.Resolve(reg.Repo("some/repo"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if user == "" && pass == "" {
			return // anonymous-equivalent
		}
		if cfg.Username != user || cfg.Password != pass {
			t.Fatalf("host %q: got %q/%q, want %q/%q", host, cfg.Username, cfg.Password, user, pass)
		}
	})
}
