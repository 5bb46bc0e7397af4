package deploy

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// secretsOnly answers the chart's lookup of Secrets from client-go's fake
// dynamic client, as a cluster holding those Secrets would.
type secretsOnly struct {
	client *dynamicfake.FakeDynamicClient
}

func (p secretsOnly) GetClientFor(string, string) (dynamic.NamespaceableResourceInterface, bool, error) {
	return p.client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}), true, nil
}

// TestHelmNotesSeeTheSecret installs with secrets.existingSecret naming a
// Secret that exists in the cluster: the notes warn, by name, when it
// has no API_TOKEN (the pods would never become ready), and do not when
// it has one.
func TestHelmNotesSeeTheSecret(t *testing.T) {
	t.Parallel()
	chart, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data map[string][]byte
		warn bool
	}{
		{"with API_TOKEN", map[string][]byte{"API_TOKEN": []byte("a-token-for-the-test"), "REDIS_PASSWORD": []byte("p")}, false},
		{"without API_TOKEN", map[string][]byte{"REDIS_PASSWORD": []byte("p")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			secret := &corev1.Secret{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
				ObjectMeta: metav1.ObjectMeta{Name: "redis-credentials", Namespace: "default"},
				Data:       tc.data,
			}
			scheme := runtime.NewScheme()
			if err := corev1.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			client := dynamicfake.NewSimpleDynamicClient(scheme, secret)
			vals, err := chartutil.ToRenderValues(chart, map[string]any{"secrets": map[string]any{"existingSecret": "redis-credentials"}},
				chartutil.ReleaseOptions{Name: "dubebox", Namespace: "default", IsInstall: true},
				&chartutil.Capabilities{KubeVersion: *kubeVersion})
			if err != nil {
				t.Fatal(err)
			}
			out, err := engine.RenderWithClientProvider(chart, vals, secretsOnly{client})
			if err != nil {
				t.Fatal(err)
			}
			notes := out["dubebox/templates/NOTES.txt"]
			if notes == "" {
				t.Fatal("no notes rendered")
			}
			if warned := strings.Contains(notes, "WARNING: the Secret redis-credentials has no API_TOKEN"); warned != tc.warn {
				t.Errorf("notes warn %v, want %v:\n%s", warned, tc.warn, notes)
			}
		})
	}
}
