// Command plot draws how slugway's control-plane cost grows with the number of
// instances, from the JSON results hack/scale writes, as one PNG of log-log panels:
//
//	go run ./hack/plot -o docs/scale.png docs/scale-data/*.json
//
// It uses only the standard library (image/png and a built-in pixel font), so the
// figure regenerates anywhere Go builds.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/slugway/slugway/hack/scale/scaleresult"
)

// The results hack/scale wrote (package scaleresult).
type (
	run    = scaleresult.Result
	steady = scaleresult.Steady
	prop   = scaleresult.Prop
)

func main() {
	out := flag.String("o", "docs/scale.png", "PNG to write")
	refresh := flag.String("refresh", "30s", "the --heartbeat-refresh whose runs make the main series")
	table := flag.Bool("table", false, "print the Markdown tables of docs/benchmarks.md instead of drawing")
	flag.Parse()
	runs, err := load(flag.Args())
	if err == nil && *table {
		fmt.Print(tables(runs))
	} else if err == nil {
		err = render(*out, runs, *refresh)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func load(paths []string) ([]run, error) {
	if len(paths) == 0 {
		return nil, errors.New("no result files given: pass the JSON files hack/scale -out wrote")
	}
	var runs []run
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var r run
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// latest keeps, per instance count, the newest run with the given refresh, sorted by instances.
func latest(runs []run, refresh string) []run {
	by := map[int]run{}
	for _, r := range runs {
		if r.HeartbeatRefresh != refresh {
			continue
		}
		if old, ok := by[r.Instances]; !ok || r.Date > old.Date {
			by[r.Instances] = r
		}
	}
	out := make([]run, 0, len(by))
	for _, r := range by {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instances < out[j].Instances })
	return out
}

type series struct {
	name string
	c    color.RGBA
	pts  [][2]float64
}

type ref struct {
	y     float64
	label string
}

type panel struct {
	title  string
	series []series
	refs   []ref
}

var (
	blue   = color.RGBA{31, 119, 180, 255}
	orange = color.RGBA{230, 120, 20, 255}
	green  = color.RGBA{44, 160, 44, 255}
	red    = color.RGBA{200, 40, 40, 255}
	grey   = color.RGBA{225, 225, 225, 255}
	dark   = color.RGBA{40, 40, 40, 255}
)

func pick(rs []run, f func(run) (float64, bool)) [][2]float64 {
	var pts [][2]float64
	for _, r := range rs {
		if v, ok := f(r); ok && v > 0 {
			pts = append(pts, [2]float64{float64(r.Instances), v})
		}
	}
	return pts
}

// panels are the figures: each a quantity against the number of instances.
func panels(runs []run, refresh string) []panel {
	main := latest(runs, refresh)
	steady := func(f func(r run) float64) func(run) (float64, bool) {
		return func(r run) (float64, bool) {
			if r.Steady == nil {
				return 0, false
			}
			return f(r), true
		}
	}
	writes := panel{title: "status writes/min", refs: nil}
	refreshes := map[string]bool{}
	for _, r := range runs {
		refreshes[r.HeartbeatRefresh] = true
	}
	names := make([]string, 0, len(refreshes))
	for k := range refreshes {
		names = append(names, k)
	}
	sort.Strings(names)
	palette := []color.RGBA{blue, orange, green, red}
	for i, k := range names {
		rs := latest(runs, k)
		pts := pick(rs, steady(func(r run) float64 { return r.Steady.InstanceWritesPerMin }))
		name := "refresh " + shortDuration(k)
		if len(pts) == 0 && len(rs) > 0 {
			name += ": 0 writes" // a log axis has no room for zero; say it in the legend
		}
		writes.series = append(writes.series, series{name, palette[i%len(palette)], pts})
	}
	// The budget line: one write per instance per 30 s.
	var budget [][2]float64
	for _, r := range main {
		budget = append(budget, [2]float64{float64(r.Instances), float64(r.Instances) * 2})
	}
	if len(budget) > 0 {
		writes.series = append(writes.series, series{"budget 1/instance/30s", red, budget})
	}
	return []panel{
		{title: "time to all healthy (s)", series: []series{
			{"from first create", blue, pick(main, func(r run) (float64, bool) { return r.TimeToHealthySeconds, r.Healthy >= r.Instances })},
		}},
		writes,
		{title: "apiserver requests/s", series: []series{
			{"all resources", blue, pick(main, steady(func(r run) float64 { return r.Steady.APIServerReqPerSec }))},
			{"slugway.io", orange, pick(main, steady(func(r run) float64 { return r.Steady.APIServerSlugwayReqPerSec }))},
		}},
		{title: "peak RSS (MiB)", series: []series{
			{"controller", blue, pick(main, func(r run) (float64, bool) { return r.ControllerRSSPeakMiB, true })},
			{"proxy", orange, pick(main, func(r run) (float64, bool) { return r.ProxyRSSPeakMiB, true })},
		}, refs: []ref{{300, "controller target"}, {150, "proxy target"}}},
		{title: "health probes/s", series: []series{
			{"at the origins", blue, pick(main, steady(func(r run) float64 { return r.Steady.ProbesPerSecond }))},
		}},
		{title: "route propagation p99 (ms)", series: []series{
			{"quiet", blue, pick(main, func(r run) (float64, bool) {
				if r.PropagationQuiet == nil {
					return 0, false
				}
				return r.PropagationQuiet.P99 * 1000, true
			})},
			{"under heartbeat writes", orange, pick(main, func(r run) (float64, bool) {
				if r.PropagationChurn == nil || r.PropagationChurn.ChurnWritesPerSec <= 0 {
					return 0, false
				}
				return r.PropagationChurn.P99 * 1000, true
			})},
		}, refs: []ref{{250, "target"}}},
	}
}

const panelW, panelH, cols = 420, 330, 3

func render(path string, runs []run, refresh string) error {
	ps := panels(runs, refresh)
	rows := (len(ps) + cols - 1) / cols
	header := 40
	img := image.NewRGBA(image.Rect(0, 0, panelW*cols, panelH*rows+header))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	machine, date := "", ""
	for _, r := range latest(runs, refresh) {
		machine, date = r.Machine, r.Date[:min(len(r.Date), 10)]
	}
	drawText(img, 10, 8, "slugway control plane cost vs instances (log-log), refresh "+shortDuration(refresh), 2, dark)
	drawText(img, 10, 28, fmt.Sprintf("%s  %s  go run ./hack/scale; go run ./hack/plot", date, machine), 1, dark)
	for i, p := range ps {
		x0, y0 := (i%cols)*panelW, header+(i/cols)*panelH
		drawPanel(img, image.Rect(x0, y0, x0+panelW, y0+panelH), p)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// drawPanel draws one log-log chart inside r.
func drawPanel(img *image.RGBA, r image.Rectangle, p panel) {
	const left, right, top, bottom = 58, 14, 28, 62
	plot := image.Rect(r.Min.X+left, r.Min.Y+top, r.Max.X-right, r.Max.Y-bottom)
	drawText(img, r.Min.X+left, r.Min.Y+8, p.title, 2, dark)

	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range p.series {
		for _, pt := range s.pts {
			xmin, xmax = math.Min(xmin, pt[0]), math.Max(xmax, pt[0])
			ymin, ymax = math.Min(ymin, pt[1]), math.Max(ymax, pt[1])
		}
	}
	for _, rf := range p.refs {
		ymin, ymax = math.Min(ymin, rf.y), math.Max(ymax, rf.y)
	}
	if math.IsInf(xmin, 0) || math.IsInf(ymin, 0) {
		drawText(img, plot.Min.X+10, plot.Min.Y+plot.Dy()/2, "no data", 2, dark)
		return
	}
	lx0, lx1 := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
	if lx1 == lx0 {
		lx1++
	}
	ly0, ly1 := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if ly1 == ly0 {
		ly1++
	}
	px := func(x float64) int {
		return plot.Min.X + int(math.Round((math.Log10(x)-lx0)/(lx1-lx0)*float64(plot.Dx())))
	}
	py := func(y float64) int {
		return plot.Max.Y - int(math.Round((math.Log10(y)-ly0)/(ly1-ly0)*float64(plot.Dy())))
	}
	// Grid and tick labels at every decade.
	for e := lx0; e <= lx1; e++ {
		x := px(math.Pow(10, e))
		vline(img, x, plot.Min.Y, plot.Max.Y, grey)
		l := tickLabel(math.Pow(10, e))
		drawText(img, x-textWidth(l, 1)/2, plot.Max.Y+5, l, 1, dark)
	}
	for e := ly0; e <= ly1; e++ {
		y := py(math.Pow(10, e))
		hline(img, plot.Min.X, plot.Max.X, y, grey)
		l := tickLabel(math.Pow(10, e))
		drawText(img, plot.Min.X-6-textWidth(l, 1), y-3, l, 1, dark)
	}
	drawText(img, plot.Min.X+plot.Dx()/2-textWidth("instances", 1)/2, plot.Max.Y+16, "instances", 1, dark)
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y, dark)
	vline(img, plot.Min.X, plot.Min.Y, plot.Max.Y, dark)

	for _, rf := range p.refs {
		y := py(rf.y)
		for x := plot.Min.X; x < plot.Max.X; x += 8 {
			hline(img, x, min(x+4, plot.Max.X), y, red)
		}
		drawText(img, plot.Max.X-textWidth(rf.label, 1)-2, y-10, rf.label, 1, red)
	}
	for _, s := range p.series {
		for i, pt := range s.pts {
			x, y := px(pt[0]), py(pt[1])
			fill(img, image.Rect(x-3, y-3, x+4, y+4), s.c)
			if i > 0 {
				prev := s.pts[i-1]
				line(img, px(prev[0]), py(prev[1]), x, y, s.c)
				line(img, px(prev[0]), py(prev[1])+1, x, y+1, s.c)
			}
			if len(s.pts) <= 5 {
				l := valueLabel(pt[1])
				lx := x + 5
				if lx+textWidth(l, 1) > r.Max.X-2 {
					lx = x - 5 - textWidth(l, 1) // keep the last point's label inside the panel
				}
				drawText(img, lx, y-10, l, 1, s.c)
			}
		}
	}
	// Legend under the axis.
	lx, ly := plot.Min.X, plot.Max.Y+30
	for _, s := range p.series {
		w := 14 + textWidth(s.name, 1) + 12
		if lx+w > r.Max.X-right {
			lx, ly = plot.Min.X, ly+12
		}
		fill(img, image.Rect(lx, ly+1, lx+10, ly+6), s.c)
		drawText(img, lx+14, ly, s.name, 1, dark)
		lx += w
	}
}

// shortDuration drops the zero units time.Duration prints: 5m0s → 5m, 1h0m0s → 1h.
func shortDuration(d string) string {
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return d
}

// tickLabel writes a decade compactly: 0.01, 0.1, 1, 10, 100, 1K, 10K, 1M.
func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gK", v/1e3)
	default:
		return fmt.Sprintf("%g", v)
	}
}

// valueLabel writes a data value with two or three significant digits.
func valueLabel(v float64) string {
	switch {
	case v >= 1e4:
		return fmt.Sprintf("%.0fK", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// line draws from (x0,y0) to (x1,y1) with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	err := dx + dy
	for {
		img.Set(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
