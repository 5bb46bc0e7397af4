package deploy

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dubebox/dubebox/internal/config"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/dubebox"

// The Kubernetes version the chart is rendered for: the oldest it supports
// (Chart.yaml's kubeVersion; the pre-stop sleep needs 1.30).
var kubeVersion = &chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

// What each case deploys: the chart's defaults, and each Redis topology's
// values file, one of them with every optional object on.
var helmCases = []struct {
	name     string
	file     string         // a values file beside values.yaml, or ""
	set      map[string]any // values on top, as --set would give them
	topology string         // what the service makes of the rendered settings
	refused  string         // when the chart must refuse to render: what it says
}{
	{name: "defaults", set: withToken(nil), topology: "single"},
	{name: "no token", topology: "single", refused: "set secrets.values.API_TOKEN"},
	{name: "no token, on purpose", set: map[string]any{"config": map[string]any{"ALLOW_NO_AUTH": "true"}}, topology: "single"},
	{name: "ingress without tls", set: withToken(map[string]any{"ingress": map[string]any{"enabled": true, "tls": []any{}}}), topology: "single", refused: "ingress.tls is empty"},
	{name: "single", file: "values-single.yaml", topology: "single"},
	{name: "cluster", file: "values-cluster.yaml", topology: "cluster"},
	{name: "sentinel", file: "values-sentinel.yaml", topology: "sentinel"},
	{name: "another port", topology: "single", set: withToken(map[string]any{"config": map[string]any{"HTTP_ADDR": ":8080"}})},
	{name: "everything", file: "values-cluster.yaml", topology: "cluster", set: map[string]any{
		"ingress":        map[string]any{"enabled": true, "className": "nginx"},
		"autoscaling":    map[string]any{"enabled": true},
		"serviceMonitor": map[string]any{"enabled": true},
		"secrets":        map[string]any{"existingSecret": "", "values": map[string]any{"API_TOKEN": "a-token-for-the-test", "REDIS_PASSWORD": "a-password"}},
	}},
}

// withToken adds an API_TOKEN to set, as a user must.
func withToken(set map[string]any) map[string]any {
	if set == nil {
		set = map[string]any{}
	}
	set["secrets"] = map[string]any{"values": map[string]any{"API_TOKEN": "a-token-for-the-test"}}
	return set
}

// release is one rendering of the chart, each object decoded strictly into
// its Kubernetes API type.
type release struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	ingress        *networkingv1.Ingress
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	serviceMonitor *monitoringv1.ServiceMonitor
	networkPolicy  *networkingv1.NetworkPolicy
	notes          string
}

// TestHelmChart lints and renders the chart for each case, as `helm lint`
// and `helm template` do, and checks what it renders against the service.
func TestHelmChart(t *testing.T) {
	t.Parallel()
	svc := readService(t)
	chart, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			vals := map[string]any{}
			if tc.file != "" {
				v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, tc.file))
				if err != nil {
					t.Fatal(err)
				}
				vals = v
			}
			vals = chartutil.CoalesceTables(tc.set, vals)

			linter := lint.AllWithKubeVersion(chartDir, vals, "default", kubeVersion)
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}

			install := action.NewInstall(&action.Configuration{})
			install.DryRun, install.ClientOnly, install.Replace = true, true, true
			install.ReleaseName, install.Namespace = "dubebox", "default"
			install.KubeVersion = kubeVersion
			rel, err := install.Run(chart, vals)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("the chart rendered (%v), want it to refuse saying %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			r := decodeRelease(t, rel.Manifest)
			r.notes = rel.Info.Notes
			checkRelease(t, svc, r, tc.topology)
			if tc.name == "everything" && (r.ingress == nil || r.hpa == nil || r.serviceMonitor == nil || r.secret == nil) {
				t.Error("with everything on, the release lacks an Ingress, an autoscaler, a ServiceMonitor or a Secret")
			}
		})
	}
}

// decodeRelease decodes each rendered object strictly (an unknown or
// duplicated field fails) into its API type.
func decodeRelease(t *testing.T, manifest string) release {
	t.Helper()
	var r release
	for name, doc := range releaseutil.SplitManifests(manifest) {
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			r.deployment = &appsv1.Deployment{}
			obj = r.deployment
		case "v1 Service":
			r.service = &corev1.Service{}
			obj = r.service
		case "v1 ConfigMap":
			r.configMap = &corev1.ConfigMap{}
			obj = r.configMap
		case "v1 Secret":
			r.secret = &corev1.Secret{}
			obj = r.secret
		case "networking.k8s.io/v1 Ingress":
			r.ingress = &networkingv1.Ingress{}
			obj = r.ingress
		case "policy/v1 PodDisruptionBudget":
			r.pdb = &policyv1.PodDisruptionBudget{}
			obj = r.pdb
		case "autoscaling/v2 HorizontalPodAutoscaler":
			r.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
			obj = r.hpa
		case "networking.k8s.io/v1 NetworkPolicy":
			r.networkPolicy = &networkingv1.NetworkPolicy{}
			obj = r.networkPolicy
		case "monitoring.coreos.com/v1 ServiceMonitor":
			r.serviceMonitor = &monitoringv1.ServiceMonitor{}
			obj = r.serviceMonitor
		default:
			t.Fatalf("%s: the test does not know %s %s; add its API type", name, head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s does not decode into %T: %v", name, obj, err)
		}
	}
	if r.deployment == nil || r.service == nil || r.configMap == nil {
		t.Fatal("the release lacks its Deployment, Service or ConfigMap")
	}
	return r
}

func checkRelease(t *testing.T, svc service, r release, topology string) {
	t.Helper()
	pod := r.deployment.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("the pod has %d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// The port and the probes.
	port := svc.port
	if addr := r.configMap.Data["HTTP_ADDR"]; addr != "" {
		port = addr[strings.LastIndex(addr, ":")+1:]
	}
	if len(c.Ports) == 0 || fmt.Sprint(c.Ports[0].ContainerPort) != port || c.Ports[0].Name != "http" {
		t.Errorf("container ports %+v, want http on HTTP_ADDR's port %s", c.Ports, port)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on port http", what, p, path)
		}
	}
	probe("readiness", c.ReadinessProbe, readinessPath)
	probe("liveness", c.LivenessProbe, livenessPath)

	// Hardening, the image's user, room to shut down, resources.
	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	switch {
	case sc == nil || psc == nil:
		t.Fatal("no security context")
	case !deref(sc.ReadOnlyRootFilesystem):
		t.Error("the root file system is writable")
	case deref(sc.AllowPrivilegeEscalation):
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("the container keeps Linux capabilities: want drop [ALL] and nothing added")
	case !deref(psc.RunAsNonRoot) || deref(psc.RunAsUser) != 65532:
		t.Errorf("the pod runs as %d (non-root %v), want the image's user 65532", deref(psc.RunAsUser), deref(psc.RunAsNonRoot))
	}
	if grace := deref(pod.Spec.TerminationGracePeriodSeconds); float64(grace) <= svc.shutdown.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d leaves no room for SHUTDOWN_TIMEOUT (%s)", grace, svc.shutdown)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if c.Resources.Requests.Name(res, "").IsZero() {
			t.Errorf("no %s request", res)
		}
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}

	// Settings: from the ConfigMap and the Secret only, the secret ones only
	// from the Secret, and together a configuration the service accepts
	// for the topology the values describe.
	if len(c.Env) > 0 {
		t.Errorf("the container sets env directly (%v); settings go through the ConfigMap and the Secret", c.Env)
	}
	environ := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			expect(t, "envFrom ConfigMap", from.ConfigMapRef.Name, r.configMap.Name)
		case from.SecretRef != nil && r.secret != nil:
			expect(t, "envFrom Secret", from.SecretRef.Name, r.secret.Name)
		}
	}
	for k, v := range r.configMap.Data {
		if svc.vars[k].Secret {
			t.Errorf("the ConfigMap holds the secret %s", k)
		}
		environ[k] = v
	}
	if r.secret != nil {
		for k, v := range r.secret.Data {
			if !svc.vars[k].Secret {
				t.Errorf("the Secret holds %s, which is not a secret setting", k)
			}
			environ[k] = string(v)
		}
	}
	cfg, err := config.Load(func(k string) string { return environ[k] })
	if err != nil {
		t.Fatalf("the service refuses the rendered settings %v: %v", maskSecrets(svc, environ), err)
	}
	expect(t, "topology", cfg.Store.Topology(), topology)

	// The Service, the budget and the autoscaler select these pods.
	selects := func(what string, sel map[string]string) {
		for k, v := range sel {
			if pod.Labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods lack", what, k, v)
			}
		}
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
	}
	selects("the Service", r.service.Spec.Selector)
	if len(r.service.Spec.Ports) != 2 || r.service.Spec.Ports[0].TargetPort.String() != "http" || r.service.Spec.Ports[1].TargetPort.String() != "metrics" {
		t.Errorf("the Service's ports %+v, want the pod's ports http and metrics", r.service.Spec.Ports)
	}
	// /metrics on a port of its own, METRICS_ADDR's, which no Ingress
	// routes; the API's port answers no /metrics.
	metricsPort := cfg.HTTP.MetricsAddr[strings.LastIndex(cfg.HTTP.MetricsAddr, ":")+1:]
	if cfg.HTTP.MetricsAddr == "" || len(c.Ports) < 2 || fmt.Sprint(c.Ports[1].ContainerPort) != metricsPort || c.Ports[1].Name != "metrics" {
		t.Errorf("METRICS_ADDR %q and the container's ports %+v: want /metrics on a port named metrics of its own", cfg.HTTP.MetricsAddr, c.Ports)
	}
	// The client's address from X-Forwarded-For, from the ingress only.
	if len(cfg.API.TrustedProxies) == 0 {
		t.Error("TRUSTED_PROXIES is not set: behind the ingress every client would share its address")
	}
	// Without a token the pods would listen on loopback; with ALLOW_NO_AUTH
	// the notes say so loudly.
	if cfg.API.AllowNoAuth && !strings.Contains(r.notes, "WARNING: no API_TOKEN is required") {
		t.Errorf("ALLOW_NO_AUTH is on and the notes do not warn: %s", r.notes)
	}
	if np := r.networkPolicy; np == nil {
		t.Error("no NetworkPolicy")
	} else {
		selects("the NetworkPolicy", np.Spec.PodSelector.MatchLabels)
		ports := map[string]bool{}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				ports[p.Port.String()] = true
			}
			if len(rule.From) == 0 {
				t.Errorf("the NetworkPolicy admits anyone to %v", rule.Ports)
			}
		}
		if len(ports) != 2 || !ports["http"] || !ports["metrics"] {
			t.Errorf("the NetworkPolicy admits ports %v, want http (from the ingress) and metrics (from Prometheus)", ports)
		}
		egress := map[string]bool{}
		for _, rule := range np.Spec.Egress {
			for _, p := range rule.Ports {
				egress[p.Port.String()] = true
			}
		}
		for _, want := range []string{"6379", "4318", "53"} {
			if !egress[want] {
				t.Errorf("the NetworkPolicy lets the pods reach %v, not port %s", egress, want)
			}
		}
	}
	if r.pdb != nil {
		selects("the PodDisruptionBudget", r.pdb.Spec.Selector.MatchLabels)
	}
	if r.hpa != nil {
		expect(t, "autoscaler target", r.hpa.Spec.ScaleTargetRef.Kind+"/"+r.hpa.Spec.ScaleTargetRef.Name, "Deployment/"+r.deployment.Name)
		if r.deployment.Spec.Replicas != nil {
			t.Error("the Deployment sets replicas while the autoscaler owns them")
		}
	}
	if r.ingress != nil {
		if len(r.ingress.Spec.TLS) == 0 {
			t.Error("the Ingress serves plain HTTP")
		}
		for _, rule := range r.ingress.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				expect(t, "ingress backend", p.Backend.Service.Name+":"+p.Backend.Service.Port.Name, r.service.Name+":http")
			}
		}
	}
	if sm := r.serviceMonitor; sm != nil {
		for k, v := range sm.Spec.Selector.MatchLabels {
			if r.service.Labels[k] != v {
				t.Errorf("the ServiceMonitor selects %s=%s, which the Service lacks", k, v)
			}
		}
		job := ""
		for _, rl := range sm.Spec.Endpoints[0].RelabelConfigs {
			if rl.TargetLabel == "job" {
				job = deref(rl.Replacement)
			}
		}
		if _, ok := svc.jobs[job]; !ok || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Port != "metrics" {
			t.Errorf("the ServiceMonitor scrapes %s on port %s as job %q; want /metrics on metrics as one of prometheus.yml's jobs %v",
				sm.Spec.Endpoints[0].Path, sm.Spec.Endpoints[0].Port, job, keys(svc.jobs))
		}
	}
}

// TestHelmValuesVariables checks that values.yaml's config and secrets
// name every variable the service reads, once, each in its place.
func TestHelmValuesVariables(t *testing.T) {
	t.Parallel()
	svc := readService(t)
	var values struct {
		Config  map[string]any
		Secrets struct{ Values map[string]any }
	}
	readYAML(t, filepath.Join(chartDir, "values.yaml"), &values)
	var misplaced []string
	for _, name := range slices.Sorted(maps.Keys(values.Secrets.Values)) {
		if v, ok := svc.vars[name]; ok && !v.Secret {
			misplaced = append(misplaced, name)
		}
	}
	if len(misplaced) > 0 {
		t.Errorf("values.yaml lists %s under secrets, but the service does not treat them as secret", strings.Join(misplaced, ", "))
	}
	svc.checkVars(t, "values.yaml", keys(values.Config), keys(values.Secrets.Values), nil)
}

// maskSecrets is environ for a failure message, without the secrets' values.
func maskSecrets(svc service, environ map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range environ {
		if svc.vars[k].Secret {
			v = "********"
		}
		out[k] = v
	}
	return out
}
