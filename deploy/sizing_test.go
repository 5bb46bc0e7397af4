package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemorySizingAgrees checks that the Helm chart's pod and the ECS
// template's API container get the same memory: the limit and GOMEMLIMIT
// that docs/operations.md ("Memory and CPU") derives from make bench's
// hostile workloads, which the document quotes too.
func TestMemorySizingAgrees(t *testing.T) {
	t.Parallel()
	var values struct {
		Resources struct {
			Requests map[string]string `json:"requests"`
			Limits   map[string]string `json:"limits"`
		} `json:"resources"`
		Config map[string]string `json:"config"`
	}
	readYAML(t, filepath.Join(chartDir, "values.yaml"), &values)
	limit, reservation := values.Resources.Limits["memory"], values.Resources.Requests["memory"]
	gomemlimit := values.Config["GOMEMLIMIT"]

	tmpl := readTemplate(t)
	td := tmpl["Resources"].(map[string]any)["TaskDefinition"].(map[string]any)["Properties"].(map[string]any)
	var api map[string]any
	for _, c := range td["ContainerDefinitions"].([]any) {
		if c := c.(map[string]any); c["Name"] == "api" {
			api = c
		}
	}
	if api == nil {
		t.Fatal("no api container in the task definition")
	}
	env := map[string]string{}
	for _, e := range api["Environment"].([]any) {
		if e, ok := e.(map[string]any); ok && e["Name"] != nil {
			env[fmt.Sprint(e["Name"])] = fmt.Sprint(e["Value"])
		}
	}
	for _, c := range []struct{ what, chart, ecs string }{
		{"memory limit", limit, fmt.Sprint(api["Memory"]) + "Mi"},
		{"memory reservation", reservation, fmt.Sprint(api["MemoryReservation"]) + "Mi"},
		{"GOMEMLIMIT", gomemlimit, env["GOMEMLIMIT"]},
	} {
		if c.chart == "" || c.chart != c.ecs {
			t.Errorf("%s: the chart says %q, the ECS template %q", c.what, c.chart, c.ecs)
		}
	}
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{strings.TrimSuffix(limit, "Mi") + " MiB", "GOMEMLIMIT=" + gomemlimit} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/operations.md does not quote the sizing %q", want)
		}
	}
}
