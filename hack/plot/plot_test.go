package main

import (
	"github.com/slugway/slugway/hack/scale/scaleresult"

	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFontCoversEveryLabel(t *testing.T) {
	runs := sampleRuns()
	var texts []string
	for _, p := range panels(runs, "30s") {
		texts = append(texts, p.title)
		for _, s := range p.series {
			texts = append(texts, s.name)
		}
		for _, r := range p.refs {
			texts = append(texts, r.label)
		}
	}
	texts = append(texts, "go run ./hack/scale; go run ./hack/plot", "AMD EPYC, 2 CPUs (linux/amd64)", tickLabel(0.01), tickLabel(10000), valueLabel(1234.5))
	for _, s := range texts {
		for _, r := range strings.ToUpper(s) {
			if _, ok := glyphs[r]; !ok {
				t.Errorf("no glyph for %q (in %q): it would draw as '?'", r, s)
			}
		}
	}
	for r, g := range glyphs {
		for _, row := range g {
			if len(row) != 5 {
				t.Errorf("glyph %q has a row of %d columns, want 5", r, len(row))
			}
		}
	}
}

func sampleRuns() []run {
	var runs []run
	for _, n := range []int{100, 1000, 10000} {
		r := run{Date: "2026-11-29T00:00:00Z", Machine: "test, 2 CPUs", Instances: n, HeartbeatRefresh: "30s", Healthy: n,
			TimeToHealthySeconds: float64(n) / 50, ControllerRSSPeakMiB: 40 + float64(n)/100, ProxyRSSPeakMiB: 30 + float64(n)/200}
		r.Steady = &steady{InstanceWritesPerMin: float64(n) * 2, ProbesPerSecond: float64(n) / 10,
			Phase: scaleresult.Phase{APIServerReqPerSec: float64(n) / 25, APIServerSlugwayReqPerSec: float64(n) / 30}}
		r.PropagationQuiet = &prop{N: 60, P50: 0.02, P99: 0.05}
		runs = append(runs, r)
	}
	old := runs[0]
	old.Date, old.TimeToHealthySeconds = "2020-01-01T00:00:00Z", 999
	return append(runs, old)
}

func TestLatestKeepsNewestPerSize(t *testing.T) {
	got := latest(sampleRuns(), "30s")
	if len(got) != 3 || got[0].Instances != 100 || got[0].TimeToHealthySeconds == 999 {
		t.Fatalf("latest = %+v, want 3 runs sorted by instances, the newest of each size", got)
	}
	if len(latest(sampleRuns(), "10s")) != 0 {
		t.Error("runs with another refresh must not be mixed in")
	}
}

func TestRenderWritesAPNGWithInk(t *testing.T) {
	out := filepath.Join(t.TempDir(), "scale.png")
	if err := render(out, sampleRuns(), "30s"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != panelW*cols || b.Dy() < 2*panelH {
		t.Fatalf("image is %v, want %d wide and two rows of panels", b, panelW*cols)
	}
	// The controller series is blue: some pixels must be blue, or nothing was plotted.
	blueish := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == uint32(blue.R) && g>>8 == uint32(blue.G) && bl>>8 == uint32(blue.B) {
				blueish++
			}
		}
	}
	if blueish < 200 {
		t.Errorf("only %d blue pixels: the series were not drawn", blueish)
	}
}

func TestLoadNeedsFiles(t *testing.T) {
	if _, err := load(nil); err == nil {
		t.Error("load with no files must fail with a hint")
	}
}

func TestTables(t *testing.T) {
	runs := sampleRuns()
	runs[1].Healthy = 10
	md := tables(runs)
	for _, want := range []string{
		"| 100 (0) | 30s | – | 2.0 s | 200 |",
		"> 20 s (10 Healthy)",
		"| 100 | 20.0 ms / 50.0 ms (60) | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("tables lack %q:\n%s", want, md)
		}
	}
}

func TestDecadeNamesTheBucket(t *testing.T) {
	if got := decade(642); got != "100–1000 s" {
		t.Errorf("decade(642) = %q, want the bucket 100–1000 s, not an interpolated 642 s", got)
	}
	if got := decade(0.0612); got != "61.2 ms" {
		t.Errorf("decade(0.0612) = %q, want 61.2 ms", got)
	}
}

func TestShortDuration(t *testing.T) {
	for in, want := range map[string]string{"30s": "30s", "5m0s": "5m", "1h0m0s": "1h", "1m30s": "1m30s"} {
		if got := shortDuration(in); got != want {
			t.Errorf("shortDuration(%q) = %q, want %q", in, got, want)
		}
	}
}
