package main

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestDockerfileMatches keeps the Dockerfile and this program building the
// same image: the same labels, entrypoint, PATH and files, no USER, and the
// same tools as hack/image.sh, staged by this program.
func TestDockerfileMatches(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	final := finalStage(df)
	if final == "" {
		t.Fatal("Dockerfile has no FROM scratch stage")
	}
	var labels, copies, env []string
	var entrypoint, toolsFrom string
	for _, ins := range instructions(final) {
		word, rest, _ := strings.Cut(ins, " ")
		switch strings.ToUpper(word) {
		case "LABEL":
			for _, f := range strings.Fields(rest) {
				if k, _, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "org.opencontainers.") {
					labels = append(labels, k)
				}
			}
		case "COPY":
			f := strings.Fields(rest)
			dst := f[len(f)-1]
			copies = append(copies, dst)
			if dst == "/" {
				toolsFrom = f[len(f)-2]
			}
		case "ENV":
			env = append(env, strings.Fields(rest)...)
		case "ENTRYPOINT":
			entrypoint = strings.TrimSpace(rest)
		case "USER":
			t.Errorf("the final stage sets USER (%s); the image leaves the user to the chart", rest)
		}
	}
	var want []string
	for k := range Labels("", "", created) {
		want = append(want, k)
	}
	sort.Strings(want)
	sort.Strings(labels)
	if !reflect.DeepEqual(labels, want) {
		t.Errorf("Dockerfile labels %q, want %q", labels, want)
	}
	if entrypoint != `["`+Entrypoint+`"]` {
		t.Errorf("Dockerfile ENTRYPOINT %s, want [%q]", entrypoint, Entrypoint)
	}
	if wantEnv := []string{"PATH=" + searchPath}; !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("Dockerfile ENV %q, want %q", env, wantEnv)
	}
	sort.Strings(copies)
	if wantCopies := []string{"/", certPath, Entrypoint}; !reflect.DeepEqual(copies, wantCopies) {
		t.Errorf("Dockerfile copies into %q, want exactly %q (the tools tree, the certificates, the binary)", copies, wantCopies)
	}

	// The tools: staged by this program, with the flags hack/image.sh gives.
	staging := dockerfileRun(t, df, "./hack/image")
	stageDir := flagValues(staging, "--stage")
	if len(stageDir) != 1 || toolsFrom != stageDir[0]+"/" {
		t.Errorf("the final stage copies %q to /, want the --stage directory %q followed by /", toolsFrom, stageDir)
	}
	if got := flagValues(staging, "--arch"); !reflect.DeepEqual(got, []string{`"$TARGETARCH"`}) {
		t.Errorf("hack/image --stage runs with --arch %q, want the target's, \"$TARGETARCH\"", got)
	}
	sh, err := os.ReadFile("../image.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^tools=\((.*)\)$`).FindStringSubmatch(string(sh))
	if m == nil {
		t.Fatal("hack/image.sh has no tools=(...) line")
	}
	if got, want := toolFlags(staging), toolFlags(m[1]); !reflect.DeepEqual(got, want) || len(want) == 0 {
		t.Errorf("the Dockerfile stages tools %q, hack/image.sh ships %q: want the same", got, want)
	}
}

// dockerfileRun returns the RUN instruction of any stage that runs cmd.
func dockerfileRun(t *testing.T, df, cmd string) string {
	t.Helper()
	for _, ins := range instructions(df) {
		if strings.HasPrefix(ins, "RUN ") && strings.Contains(ins, " "+cmd+" ") {
			return ins
		}
	}
	t.Fatalf("the Dockerfile has no RUN of %s", cmd)
	return ""
}

// flagValues returns the values of every `name VALUE` or `name=VALUE` in a
// command line.
func flagValues(cmdline, name string) []string {
	var out []string
	f := strings.Fields(cmdline)
	for i, a := range f {
		switch {
		case a == name && i+1 < len(f):
			out = append(out, f[i+1])
		case strings.HasPrefix(a, name+"="):
			out = append(out, strings.TrimPrefix(a, name+"="))
		}
	}
	return out
}

// toolFlags lists a command line's tool flags by what they put in the
// image: the image path of --tool and --tool-file (the host path differs
// between a build machine and a Debian root), all of --tool-link.
func toolFlags(cmdline string) []string {
	var out []string
	for _, name := range []string{"--tool", "--tool-file", "--tool-link"} {
		for _, v := range flagValues(cmdline, name) {
			v = strings.Trim(v, `"'`)
			if name != "--tool-link" {
				v, _, _ = strings.Cut(v, "=")
			}
			out = append(out, name+" "+v)
		}
	}
	sort.Strings(out)
	return out
}

// finalStage returns the Dockerfile text from its last FROM on, if that FROM
// is scratch.
func finalStage(df string) string {
	i := strings.LastIndex(df, "\nFROM ")
	if i < 0 || !strings.HasPrefix(df[i+1:], "FROM scratch") {
		return ""
	}
	return df[i+1:]
}

// instructions joins continuation lines and drops comments and blank lines.
func instructions(stage string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(stage, "\n") {
		line = strings.TrimSpace(line)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}
