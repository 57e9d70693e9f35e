package policyset

import (
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
)

func TestNewValidates(t *testing.T) {
	client := fake.NewSimpleClientset()
	tests := []struct {
		name string
		opts Options
		err  string
	}{
		{"nothing at all", Options{}, "no policy bundles: the default bundle is left out, and there are no bundle directories and no bundle ConfigMaps"},
		{"a selector without a client", Options{Selector: "a=b"}, "no policy bundles: the default bundle is left out, and there are no bundle directories and no bundle ConfigMaps"},
		{"no namespace", Options{Client: client, Selector: "a=b"}, "bundle ConfigMaps: the namespace must be set"},
		{"bad selector", Options{Client: client, Namespace: "ns", Selector: "a=(b"}, `bundle ConfigMap selector "a=(b": unable to parse requirement: `},
		{"default bundle only", Options{DefaultBundle: true}, ""},
		{"ConfigMaps only", Options{Client: client, Namespace: "ns", Selector: "a=b"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.opts)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if m.Ready() == nil || m.Current() != nil || m.Generation() != 0 {
					t.Fatal("ready before Start")
				}
				if m.opts.Debounce != DefaultDebounce || m.opts.TestTimeout != DefaultTestTimeout {
					t.Fatalf("defaults not filled: %+v", m.opts)
				}
				return
			}
			if err == nil || len(err.Error()) < len(tt.err) || err.Error()[:len(tt.err)] != tt.err {
				t.Fatalf("New: %v, want %s", err, tt.err)
			}
		})
	}
}

func TestOptionsFromConfig(t *testing.T) {
	cfg := config.Defaults()
	cfg.Bundles = []string{"/a", "/b"}
	o := OptionsFromConfig(&cfg)
	if !o.DefaultBundle || len(o.Dirs) != 2 || o.Dirs[1] != "/b" || o.Namespace != "eks" ||
		o.Selector != "pod-identity-webhook.io/bundle=true" || o.Compile.EvalTimeout != cfg.PolicyTimeout ||
		o.Compile.CELCostLimit != cfg.CELCostLimit || o.Compile.Params["annotationPrefix"] != "eks.amazonaws.com" {
		t.Fatalf("options = %+v", o)
	}
	cfg.NoDefaultBundle = true
	if OptionsFromConfig(&cfg).DefaultBundle {
		t.Fatal("--no-default-bundle ignored")
	}
}
