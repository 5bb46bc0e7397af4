//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// pictures are the README's pictures of the dashboard: each a panel of
// grafana/dashboards/dubebox.json, drawn from the panel's own queries over
// the load's own window, with the unit of its axis.
var pictures = []struct{ panel, file, unit string }{
	{"Request rate by route", "request-rate.png", "requests per second"},
	{"p99 latency by route", "p99-by-route.png", "seconds"},
	{"Hit ratio: near cache, API and Redis", "hit-ratio.png", "ratio"},
	{"Redis p99 by command", "redis-p99.png", "seconds"},
}

// rateWindow is the dashboard's $__rate_interval as variables sets it.
const rateWindow = 30 * time.Second

// maxSeries is the most lines one picture draws, the busiest ones: as many
// as the palette has distinct colours.
const maxSeries = 7

// takePictures draws the pictures into dir from Prometheus over
// [from, to], and takes the /docs page of the API at base with headless
// Chromium; each must pass the check the README's pictures pass. Grafana
// itself cannot run where the tests run; the pictures use the panels'
// queries, so they show what the dashboard shows.
func takePictures(t *testing.T, promURL, base, dashboard, dir string, from, to time.Time) {
	t.Helper()
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	byTitle := map[string]panel{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			byTitle[p.Title] = p
		}
	}
	walk(dash.Panels)
	// From one rate window into the load (half of a shorter one), so that
	// what is drawn is the load's steady state, not the window filling.
	steady := from.Add(min(rateWindow, to.Sub(from)/2))
	for _, pic := range pictures {
		p, ok := byTitle[pic.panel]
		if !ok {
			t.Fatalf("the dashboard has no panel %q: update pictures with it", pic.panel)
		}
		out := filepath.Join(dir, pic.file)
		n := drawPanel(t, promURL, p, pic.unit, out, steady, to)
		t.Logf("pictures: %q, %d series, %s to %s, in %s", pic.panel, n, steady.UTC().Format("15:04:05"), to.UTC().Format("15:04:05"), out)
		checkPicture(t, out)
	}
	docsPage(t, base+"/docs", filepath.Join(dir, "docs-page.png"))
	checkPicture(t, filepath.Join(dir, "docs-page.png"))
}

type series struct {
	name string
	xs   plotter.XYs
	mean float64
}

// drawPanel runs the panel's queries over the window and draws every
// series as a line; it returns how many it drew.
func drawPanel(t *testing.T, promURL string, p panel, unit, out string, from, to time.Time) int {
	t.Helper()
	var all []series
	for _, tg := range p.Targets {
		expr := variables.Replace(tg.Expr)
		q := url.Values{"query": {expr}, "start": {strconv.FormatInt(from.Unix(), 10)}, "end": {strconv.FormatInt(to.Unix(), 10)}, "step": {"5"}}
		pr := promGet(t, promURL+"/api/v1/query_range?"+q.Encode())
		var data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		}
		if pr.Status != "success" || json.Unmarshal(pr.Data, &data) != nil {
			t.Fatalf("panel %q: %s: %s", p.Title, expr, pr.Error)
		}
		for _, r := range data.Result {
			s := series{name: legend(tg.LegendFormat, r.Metric)}
			sum := 0.0
			for _, v := range r.Values {
				ts, _ := v[0].(float64)
				str, _ := v[1].(string)
				f, err := strconv.ParseFloat(str, 64)
				if err != nil || f != f { // NaN: no requests in that step
					continue
				}
				s.xs = append(s.xs, plotter.XY{X: ts, Y: f})
				sum += f
			}
			if len(s.xs) > 1 {
				s.mean = sum / float64(len(s.xs))
				all = append(all, s)
			}
		}
	}
	if len(all) == 0 {
		t.Fatalf("panel %q has no data between %v and %v", p.Title, from, to)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mean > all[j].mean })
	all = all[:min(len(all), maxSeries)]

	pl := plot.New()
	pl.Title.Text = p.Title + " (the dashboard's queries under make e2e's mixed traffic)"
	pl.X.Label.Text = "time (UTC)"
	pl.X.Tick.Marker = plot.TimeTicks{Format: "15:04:05"}
	pl.Y.Label.Text = unit
	pl.Y.Min = 0
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.Add(plotter.NewGrid())
	top := 0.0
	for _, s := range all {
		for _, xy := range s.xs {
			top = max(top, xy.Y)
		}
	}
	// Room above the highest line for the legend.
	pl.Y.Max = top * 1.45
	for i, s := range all {
		l, err := plotter.NewLine(s.xs)
		if err != nil {
			t.Fatal(err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		pl.Add(l)
		pl.Legend.Add(s.name, l)
	}
	if err := pl.Save(12*vg.Inch, 5*vg.Inch, out); err != nil {
		t.Fatal(err)
	}
	return len(all)
}

// legend fills a Grafana legend format ("{{route}}") from the labels.
func legend(format string, labels map[string]string) string {
	if format == "" || format == "__auto" {
		var parts []string
		for k, v := range labels {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	for k, v := range labels {
		format = strings.ReplaceAll(format, "{{"+k+"}}", v)
		format = strings.ReplaceAll(format, "{{ "+k+" }}", v)
	}
	return format
}

// docsPage takes the /docs page (Swagger UI) with headless Chromium.
func docsPage(t *testing.T, u, out string) {
	t.Helper()
	chromium := servicetest.Need(t, "chromium", "apt-get install -y chromium")
	abs, err := filepath.Abs(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--hide-scrollbars", "--window-size=1280,1000", "--virtual-time-budget=8000",
		"--screenshot="+abs, u)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	t.Logf("pictures: %s in %s", u, fmt.Sprint(abs))
}
