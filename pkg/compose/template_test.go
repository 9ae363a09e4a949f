package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

var testPod = PodInfo{PodName: "web-0", PodNamespace: "shop", PodUID: "u-1", ServiceAccount: "sa", NodeName: "n1", VolumeID: "v1"}

func templateFile(path, text string) v1alpha1.InitFile {
	return v1alpha1.InitFile{Path: path, Template: &text}
}

func contentFile(path, text string) v1alpha1.InitFile {
	return v1alpha1.InitFile{Path: path, Content: &text}
}

// renderWithin runs RenderInit and fails the test if it does not return
// within limit: a detector of runaway templates, not a timing assertion.
func renderWithin(t testing.TB, limit time.Duration, ctx context.Context, init *v1alpha1.InitLayer) ([]RenderedFile, error) {
	t.Helper()
	type result struct {
		files []RenderedFile
		err   error
	}
	done := make(chan result, 1)
	go func() {
		files, err := RenderInit(ctx, init, testPod, nil)
		done <- result{files, err}
	}()
	select {
	case r := <-done:
		return r.files, r.err
	case <-time.After(limit):
		t.Fatalf("RenderInit did not return within %v", limit)
		return nil, nil
	}
}

// chain defines n templates, each calling the next twice: 2^n calls.
func chain(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{{define "t%d"}}{{template "t%d"}}{{template "t%d"}}{{end}}`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `{{define "t%d"}}x{{end}}{{template "t0"}}`, n)
	return b.String()
}

func TestRenderInitRefusesHostileTemplates(t *testing.T) {
	tests := []struct {
		name, path, template, msg string
	}{
		{"runaway range", "etc/x", `{{range 1000000000000000}}{{end}}`, "{{range 1000000000000000}} iterates 1000000000000000 times"},
		{"range beyond int64", "etc/x", `{{range 18446744073709551615}}{{end}}`, "iterates 18446744073709551615 times"},
		{"nested ranges", "etc/x", `{{range 10000}}{{range 10000}}{{end}}{{end}}`, "iterate up to 100010000 times"},
		{"range over a computed value", "etc/x", `{{range len .PodName}}x{{end}}`, "etc/x:1:8: {{range len .PodName}}: init templates may range only over an integer constant"},
		{"range over a variable", "etc/x", `{{$n := 3}}{{range $n}}x{{end}}`, "{{range $n}}: init templates may range only over an integer constant"},
		{"range over a byte", "etc/x", `{{range index .PodName 0}}x{{end}}`, "may range only over an integer constant"},
		{"recursion", "etc/x", `{{define "a"}}{{template "a"}}{{end}}{{template "a"}}`, `template "a" calls itself ("a" -> "a")`},
		{"mutual recursion", "etc/x", `{{define "a"}}{{template "b"}}{{end}}{{define "b"}}{{template "a"}}{{end}}{{template "a"}}`, `("a" -> "b" -> "a")`},
		{"recursion through the file", "etc/x", `x{{template "etc/x"}}`, `template "etc/x" calls itself`},
		{"recursive block", "etc/x", `{{block "b" .}}{{template "b" .}}{{end}}`, `template "b" calls itself`},
		{"exponential calls", "etc/x", chain(40), "template actions, loops and {{template}} calls multiplied out"},
		{"ranged calls", "etc/x", `{{define "a"}}{{range 100}}{{range 100}}{{end}}{{end}}{{end}}{{range 2}}{{template "a"}}{{end}}`, "iterate up to 20202 times"},
		{"huge printf width", "etc/x", `{{printf "%0999999999d" 1}}`, "printf could produce up to"},
		{"largest printf width fmt takes", "etc/x", `{{printf "%9999999d" 1}}`, "printf could produce up to 20001127 bytes; one call may produce 4194304"},
		{"huge printf precision", "etc/x", `{{printf "%.9999999f" 1.0}}`, "printf could produce up to"},
		{"many printf widths", "etc/x", `{{printf "%1000000s%1000000s%1000000s" "" "" ""}}`, "printf could produce up to"},
		{"printf width from an argument", "etc/x", `{{printf "%*d%*d%*d" 1000000 1 1000000 1 1000000 1}}`, "printf could produce up to"},
		{"printf reusing an argument", "etc/x", `{{$x := printf "%1000000s" ""}}{{printf "%[1]s%[1]s%[1]s%[1]s" $x}}`, "printf could produce up to"},
		{"doubling", "etc/x", `{{$x := printf "%100000s" ""}}` + strings.Repeat(`{{$x = printf "%s%s" $x $x}}`, 10), "printf could produce up to"},
		{"live strings", "etc/x", `{{$x := printf "%1000000s" ""}}` + strings.Repeat(`{{$y := print $x}}`, 40), "bytes the string functions of one volume's init templates may produce or compare are left"},
		{"long comparisons", "etc/x", `{{$a := printf "%1000000s" ""}}{{$b := printf "%1000000s" ""}}{{range 10000}}{{if eq $a $b}}{{end}}{{end}}`, "eq needs"},
		{"long orderings", "etc/x", `{{$a := printf "%1000000s" ""}}{{$b := printf "%1000000s" ""}}{{range 10000}}{{if lt $a $b}}{{end}}{{end}}`, "lt needs"},
		{"escaping", "etc/x", `{{html (printf "%1000000s" "")}}`, "html could produce up to"},
		{"huge output", "etc/x", `{{range 10000}}{{printf "%1000s" ""}}{{end}}`, "template output exceeds 1048576 bytes"},
		{"huge text", "etc/x", strings.Repeat("x", maxInitFileBytes+1), "etc/x) is 1048577 bytes, over the 1048576 byte limit"},
		{"unknown field", "etc/x", `{{.Nope}}`, "Nope"},
		{"bad syntax", "etc/x", `{{`, "unclosed action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile(tt.path, tt.template)}}
			_, err := renderWithin(t, 5*time.Second, context.Background(), init)
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("want ErrInvalidSpec mentioning %q, got %v", tt.msg, err)
			}
			if !strings.Contains(err.Error(), "init.files[0] ("+tt.path+")") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

// The template of the report: it spun a core forever.
func TestRenderInitRunawayRangeReturns(t *testing.T) {
	init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile("etc/x", `{{range 1000000000000000}}{{end}}`)}}
	if _, err := renderWithin(t, time.Second, context.Background(), init); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("want ErrInvalidSpec, got %v", err)
	}
}

// Legitimate templates render as text/template renders them, through the
// bounded functions.
func TestRenderInitMatchesTextTemplate(t *testing.T) {
	templates := []string{
		`{{.PodNamespace}}/{{.PodName}}`,
		`{{range 3}}replica-{{.}}
{{end}}`,
		`{{range $i := 4}}{{if eq $i 2}}{{break}}{{end}}{{$i}}{{end}}{{range 0}}x{{else}}none{{end}}`,
		`{{define "host"}}{{.PodName}}.{{.PodNamespace}}.svc{{end}}a={{template "host" .}} b={{template "host" .}}`,
		`{{block "b" .}}default {{.NodeName}}{{end}}`,
		`{{printf "%-8s|%08.3f|%x|%q|% #x|%*d|%[1]s" .PodName 3.14159 .PodUID .NodeName "ab" 5 42}}`,
		`{{printf "%d %s" 1}} {{printf "%d" 1 2}} {{printf "%!"}} {{printf "%"}} {{printf "%T %v" . .}}`,
		`{{print 1 2 "a" "b" 3}} {{println .PodName 1}} {{print}}`,
		`{{html "<a href='x'>&</a>"}} {{js "</script>\u2028"}} {{urlquery "a b&c=d"}} {{html 1 "x" .}}`,
		`{{eq .PodName "web-0"}} {{eq 1 2 3 1}} {{ne .PodName "x"}} {{eq (index .PodName 0) 119}} {{eq (len .PodName) 5}}`,
		`{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1.5 2.5}} {{lt (index .PodName 0) 1}} {{lt -1 (index .PodName 0)}}`,
		`{{if and .PodName (not .PodUID)}}a{{else if or .NodeName ""}}b{{end}} {{slice .PodName 1 3}} {{len .VolumeID}}`,
		`{{with $x := printf "%s-%s" .PodName .NodeName}}{{$x}}{{end}}`,
		`{{eq nil nil}}`,
		`{{lt true false}}`,
		`{{eq 1 "a"}}`,
		`{{eq 1}}`,
		`{{lt 1 2i}}`,
		`{{eq . .}}`,
	}
	for _, text := range templates {
		t.Run(text, func(t *testing.T) {
			var want bytes.Buffer
			wantErr := template.Must(template.New("x").Option("missingkey=error").Parse(text)).Execute(&want, testPod)
			files, err := RenderInit(context.Background(), &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile("x", text)}}, testPod, nil)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("got error %v, text/template gives %v", err, wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("want ErrInvalidSpec, got %v", err)
				}
				return
			}
			if got := string(files[0].Data); got != want.String() {
				t.Errorf("got %q, text/template gives %q", got, want.String())
			}
		})
	}
}

func TestRenderInitLimitsVolume(t *testing.T) {
	mib := strings.Repeat("x", maxInitFileBytes)
	n := func(count int, file func(i int) v1alpha1.InitFile) *v1alpha1.InitLayer {
		init := &v1alpha1.InitLayer{}
		for i := range count {
			init.Files = append(init.Files, file(i))
		}
		return init
	}
	tests := []struct {
		name string
		init *v1alpha1.InitLayer
		msg  string
	}{
		{"too many files", n(maxInitFiles+1, func(i int) v1alpha1.InitFile { return contentFile(fmt.Sprint(i), "") }),
			"init.files has 257 files; one volume may have 256"},
		{"contents over the total", n(17, func(i int) v1alpha1.InitFile { return contentFile(fmt.Sprint(i), mib) }),
			"the contents of init.files[0..16] are 17825792 bytes, over the 16777216 byte limit for one volume"},
		{"content over the file limit", n(1, func(i int) v1alpha1.InitFile { return contentFile("big", mib+"x") }),
			"init.files[0] (big) is 1048577 bytes, over the 1048576 byte limit"},
		{"templates over the total", n(17, func(i int) v1alpha1.InitFile {
			return templateFile(fmt.Sprint(i), `{{printf "%1000000s" ""}}{{printf "%48576s" ""}}`)
		}), "template output brings the init files over the 16777216 byte limit for one volume"},
		{"contents and templates over the total", n(17, func(i int) v1alpha1.InitFile {
			if i == 0 {
				return templateFile("t", `{{range 1024}}{{printf "%1024s" ""}}{{end}}`)
			}
			return contentFile(fmt.Sprint(i), mib)
		}), "init.files[16] (16) brings the init files to 17825792 bytes, over the 16777216 byte limit for one volume"},
		{"ranges over the volume's iterations", n(2, func(i int) v1alpha1.InitFile {
			return templateFile(fmt.Sprint(i), `{{range 6000}}{{end}}`)
		}), "init.files[1] (1): invalid LayerSet: the template's ranges iterate up to 6000 times, nested ones multiplied out; the init templates of one volume may iterate 10000 times in all, 4000 of them left"},
		{"bad mode", &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{{Path: "m", Content: new(string), Mode: ptr(int32(0o1000))}}},
			"mode 01000 is not a permission mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderWithin(t, 10*time.Second, context.Background(), tt.init)
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("want ErrInvalidSpec mentioning %q, got %v", tt.msg, err)
			}
		})
	}

	// At the limits, all is rendered.
	init := n(16, func(i int) v1alpha1.InitFile { return contentFile(fmt.Sprint(i), mib) })
	init.Files[15] = templateFile("t", `{{range 1024}}{{printf "%1024s" ""}}{{end}}`)
	files, err := RenderInit(context.Background(), init, testPod, nil)
	if err != nil || len(files) != 16 || len(files[15].Data) != maxInitFileBytes {
		t.Fatalf("16 files of 1 MiB: %d files, %v", len(files), err)
	}
}

func ptr[T any](v T) *T { return &v }

// A key read through the KeyReader counts towards the volume's total.
func TestRenderInitLimitsKeys(t *testing.T) {
	mib := make([]byte, maxInitFileBytes)
	keys := func(context.Context, string, v1alpha1.KeyReference) ([]byte, error) { return mib, nil }
	init := &v1alpha1.InitLayer{}
	for i := range 17 {
		init.Files = append(init.Files, v1alpha1.InitFile{Path: fmt.Sprint(i), ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "cm", Key: "k"}})
	}
	_, err := RenderInit(context.Background(), init, testPod, keys)
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "17825792 bytes, over the 16777216 byte limit") {
		t.Fatalf("want the total refused, got %v", err)
	}
}

func TestRenderInitHonoursContext(t *testing.T) {
	init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{
		contentFile("a", "a"),
		templateFile("b", `{{range 10000}}{{printf "%s" "x"}}{{end}}`),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RenderInit(ctx, init, testPod, nil); !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("want context.Canceled, got %v", err)
	}

	// Cancelled while the template runs: the writer and the functions stop it.
	for name, text := range map[string]string{
		"writer": `{{range 10000}}{{$.PodName}}{{end}}`,
		"funcs":  `{{range 10000}}{{$x := printf "%s" "x"}}{{end}}`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			keys := func(context.Context, string, v1alpha1.KeyReference) ([]byte, error) {
				calls++
				cancel()
				return nil, nil
			}
			init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{
				{Path: "k", ConfigMapKeyRef: &v1alpha1.KeyReference{}},
				templateFile("t", text),
			}}
			// The key reader cancels; the template is then refused between files.
			if _, err := RenderInit(ctx, init, testPod, keys); !errors.Is(err, context.Canceled) || calls != 1 {
				t.Fatalf("want context.Canceled after one key read, got %v after %d", err, calls)
			}
			// Within Execute: a budget whose context is done stops at the first write or call.
			b := newRenderBudget(ctx)
			tmpl, err := b.parseTemplate("t", text)
			if err != nil {
				t.Fatal(err)
			}
			w := &limitedWriter{ctx: ctx, file: maxInitFileBytes, total: maxInitTotalBytes}
			if err := tmpl.Execute(w, testPod); !errors.Is(err, context.Canceled) || w.buf.Len() != 0 {
				t.Fatalf("want context.Canceled and no output, got %v and %d bytes", err, w.buf.Len())
			}
		})
	}
}

func TestPrintfBound(t *testing.T) {
	for _, c := range []struct {
		format string
		args   []any
	}{
		{"%s", []any{"abc"}},
		{"% #x", []any{strings.Repeat("\xff", 100)}},
		{"%+q", []any{strings.Repeat("\x00\u2028\U0010FFFF", 30)}},
		{"%#v %+v %x", []any{testPod, testPod, testPod}},
		{"%.300f %f %v", []any{1e308, -1e308, complex(1e308, -1e308)}},
		{"%.100f", []any{complex(1e308, -1e308)}},
		{"%9999999d", []any{1}},
		{"%*.*f", []any{-1000, 999, 1e300}},
		{"%[3]*.[2]*[1]f %[1]s %[1]q", []any{"x\x00", 500, 700}},
		{"%!%%%z%", []any{nil, true, uint8(7)}},
		{"%d", []any{1, 2, "extra", testPod}},
		{"%s %s %s", nil},
	} {
		got := int64(len(fmt.Sprintf(c.format, c.args...)))
		if bound := printfBound(c.format, c.args); got > bound {
			t.Errorf("printf %q: %d bytes, bound %d", c.format, got, bound)
		}
	}
}

func FuzzRenderInit(f *testing.F) {
	for _, s := range []string{
		`{{.PodNamespace}}/{{.PodName}} {{.PodUID}}`,
		`{{range 1000000000000000}}{{end}}`,
		`{{range 100}}{{range 100}}{{printf "%5d" .}}{{end}}{{end}}`,
		`{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}{{.NodeName}}{{end}}{{template "a" .}}`,
		`{{define "a"}}{{template "a"}}{{end}}{{template "a"}}`,
		chain(8),
		`{{printf "%0999999999d" 1}}`,
		`{{printf "%*.*f %[1]q" 1000 500 3.5}}`,
		`{{$x := printf "%100000s" ""}}{{$x = printf "%s%s" $x $x}}{{len $x}}`,
		`{{html .PodName}}{{js "<x>"}}{{urlquery "a b"}}{{print 1 "a"}}{{println 2}}`,
		`{{if eq .PodName "web-0" "x"}}{{lt 1 2}}{{le "a" "b"}}{{gt 2 1}}{{ge 1 1}}{{ne 1 2}}{{end}}`,
		`{{with .PodName}}{{slice . 1}}{{index . 0}}{{end}}{{block "b" .}}{{len .NodeName}}{{end}}`,
		`{{range $i := 5}}{{if eq $i 3}}{{continue}}{{end}}{{$i}}{{else}}none{{end}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		files, err := renderWithin(t, 20*time.Second, ctx, &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile("f", text)}})
		if ctx.Err() != nil {
			t.Fatalf("RenderInit ran into its deadline: %v", err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("want nil or ErrInvalidSpec, got %v", err)
			}
			return
		}
		if len(files) != 1 || len(files[0].Data) > maxInitFileBytes {
			t.Fatalf("%d files, the first of %d bytes", len(files), len(files[0].Data))
		}
		// What was accepted ran within the bounds, so text/template with its
		// own functions renders it the same way.
		var want bytes.Buffer
		if err := template.Must(template.New("f").Option("missingkey=error").Parse(text)).Execute(&want, testPod); err != nil {
			t.Fatalf("text/template fails where RenderInit did not: %v", err)
		}
		if !bytes.Equal(want.Bytes(), files[0].Data) {
			t.Fatalf("got %q, text/template gives %q", files[0].Data, want.Bytes())
		}
	})
}
