//go:build bench

package bench

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
)

// fleetSizes are how many idle DubeBox instances run while Redis takes
// writes: what a write costs Redis as the fleet grows.
var fleetSizes = []int{0, 1, 3, 10}

// fleetFigures are Redis's own CPU per SET (µs) of keys under the prefix
// that no instance has read, by fleet size.
type fleetFigures struct {
	sizes []int
	us    []float64
}

// measureFleet runs redis-benchmark SETs of random keys under the key
// prefix (keys no instance has read) with 0, 1, 3 and 10 instances of
// DubeBox running as shipped but idle, and reads Redis's CPU per SET from
// /proc: the near cache's tracking makes Redis tell the instances of
// writes, and this is what that costs Redis.
func measureFleet(t *testing.T, pl plan, bin string, rs *redistest.Server) fleetFigures {
	t.Helper()
	f := fleetFigures{sizes: fleetSizes}
	host, port, _ := strings.Cut(rs.Addr, ":")
	var fleet []*server
	defer func() {
		for _, s := range fleet {
			s.stop()
		}
	}()
	for _, n := range fleetSizes {
		for len(fleet) < n {
			fleet = append(fleet, startServer(t, bin, rs.Addr, []string{"LOG_LEVEL=warn", "OTEL_TRACES_EXPORTER=none"}))
		}
		// Tracking is on once the instances are ready; give the last one
		// a moment to subscribe.
		time.Sleep(time.Second)
		var xs []float64
		for range pl.repeats {
			before := cpuOf(t, rs.Pid())
			out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-c", strconv.Itoa(conns),
				"-n", strconv.Itoa(pl.redisN), "-r", "1000000", "SET", "dubebox:fleet:__rand_int__", strings.Repeat("v", valueLen)).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-benchmark: %v %s", err, out)
			}
			xs = append(xs, float64((cpuOf(t, rs.Pid())-before).Microseconds())/float64(pl.redisN))
		}
		f.us = append(f.us, median(xs))
	}
	return f
}

func (f fleetFigures) figures() map[string]float64 {
	m := map[string]float64{}
	for i, n := range f.sizes {
		m[fmt.Sprintf("Redis CPU a SET with %d instances", n)] = f.us[i]
	}
	return m
}

func (f fleetFigures) render() string {
	var b strings.Builder
	b.WriteString("\n**Writes as the fleet grows**: Redis's own CPU per SET (µs, from /proc; redis-benchmark, 32 connections, keys under the prefix that no instance has read) while idle DubeBox instances run as shipped; in brackets, ÷ that with none:\n\n| instances |")
	for _, n := range f.sizes {
		fmt.Fprintf(&b, " %d |", n)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(f.sizes)) + "\n| Redis µs a SET |")
	for i := range f.sizes {
		fmt.Fprintf(&b, " %.2f (%.2f×) |", f.us[i], f.us[i]/f.us[0])
	}
	last := f.us[len(f.us)-1] / f.us[0]
	fmt.Fprintf(&b, "\n\nTarget (issue 24): with %d instances at most 1.20× the cost with none; measured %.2f×, met %v.\n", f.sizes[len(f.sizes)-1], last, last <= 1.2)
	return b.String()
}
