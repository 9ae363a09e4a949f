package compose

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// Kept templates render what fresh ones render, the first time and every
// time after, and are refused as fresh ones are.
func TestTemplatesRenderAsFresh(t *testing.T) {
	var cache Templates
	cases := []*v1alpha1.InitLayer{
		{Files: []v1alpha1.InitFile{templateFile("a", `{{.PodNamespace}}/{{.PodName}} on {{.NodeName}}`)}},
		{Files: []v1alpha1.InitFile{templateFile("b", `{{range 3}}{{printf "%s-%d " $.PodName .}}{{end}}{{html "<x>"}}`)}},
		{Files: []v1alpha1.InitFile{templateFile("c", `{{define "h"}}{{.PodUID}}{{end}}{{template "h" .}}{{if eq .PodName "web-0"}}yes{{end}}`)}},
		{Files: []v1alpha1.InitFile{contentFile("d", "plain"), templateFile("e", `{{.VolumeID}}`)}},
		{Files: []v1alpha1.InitFile{templateFile("bad", `{{.Nope}}`)}},
		{Files: []v1alpha1.InitFile{templateFile("syntax", `{{`)}},
		{Files: []v1alpha1.InitFile{templateFile("range", `{{range 1000000000000000}}{{end}}`)}},
	}
	for _, init := range cases {
		want, wantErr := RenderInit(context.Background(), init, testPod, nil)
		for round := range 3 {
			got, err := cache.RenderInit(context.Background(), init, testPod, nil)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("%s, round %d: error %v, fresh gives %v", init.Files[0].Path, round, err, wantErr)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("%s, round %d: %q, fresh gives %q", init.Files[0].Path, round, got, want)
			}
		}
	}
}

// The budget is the volume's, not the template's: kept templates are
// charged at every render, so two files that together iterate too much
// are refused every time, and one render's spending does not leak into
// the next.
func TestTemplatesChargeEachRender(t *testing.T) {
	var cache Templates
	over := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{
		templateFile("0", `{{range 6000}}{{end}}`),
		templateFile("1", `{{range 6000}}{{end}}`),
	}}
	within := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile("0", `{{range 6000}}{{end}}`)}}
	for range 3 {
		if _, err := cache.RenderInit(context.Background(), over, testPod, nil); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "4000 of them left") {
			t.Fatalf("two files of 6000 iterations: %v, want refused", err)
		}
		if _, err := cache.RenderInit(context.Background(), within, testPod, nil); err != nil {
			t.Fatalf("one file of 6000 iterations: %v", err)
		}
	}
	// A function's work is charged to the render running it.
	big := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{
		templateFile("p", `{{$x := printf "%1000000s" ""}}`+strings.Repeat(`{{$y := print $x}}`, 20)),
	}}
	for range 3 {
		if _, err := cache.RenderInit(context.Background(), big, testPod, nil); err != nil {
			t.Fatalf("a render within the work budget: %v", err)
		}
	}
}

// An edited template is a different template: the new text renders.
func TestTemplatesFollowEdits(t *testing.T) {
	var cache Templates
	for _, text := range []string{`old {{.PodName}}`, `new {{.PodName}}`} {
		init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile("etc/x", text)}}
		files, err := cache.RenderInit(context.Background(), init, testPod, nil)
		if err != nil || string(files[0].Data) != strings.Fields(text)[0]+" web-0" {
			t.Fatalf("%q rendered %q, %v", text, files, err)
		}
	}
}

// Renders side by side each see their own pod and budget (run with -race).
func TestTemplatesConcurrent(t *testing.T) {
	var cache Templates
	init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{
		templateFile("a", `{{printf "%s/%s" .PodNamespace .PodName}}`),
		templateFile("b", `{{range 100}}{{if eq $.PodUID "x"}}{{end}}{{end}}{{.PodUID}}`),
	}}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				pod := PodInfo{PodName: fmt.Sprintf("p%d-%d", g, i), PodNamespace: "ns", PodUID: fmt.Sprint(g)}
				files, err := cache.RenderInit(context.Background(), init, pod, nil)
				if err != nil {
					errs <- err
					return
				}
				if string(files[0].Data) != "ns/"+pod.PodName || string(files[1].Data) != pod.PodUID {
					errs <- fmt.Errorf("pod %s rendered %q and %q", pod.PodName, files[0].Data, files[1].Data)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The cache holds a bounded number of templates, whoever writes them.
func TestTemplatesBounded(t *testing.T) {
	var cache Templates
	for i := range 3 * maxCachedTemplates {
		init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{templateFile("x", fmt.Sprintf("%d {{.PodName}}", i))}}
		if _, err := cache.RenderInit(context.Background(), init, testPod, nil); err != nil {
			t.Fatal(err)
		}
	}
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if n := len(cache.entries); n > maxCachedTemplates {
		t.Errorf("%d templates kept, more than %d", n, maxCachedTemplates)
	}
	if cache.bytes > maxCachedTemplateBytes {
		t.Errorf("%d bytes of templates kept, more than %d", cache.bytes, maxCachedTemplateBytes)
	}
}
