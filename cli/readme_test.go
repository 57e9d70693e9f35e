package cli

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// The README documents every flag of serve and every metric; these tests keep it so.

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadmeDocumentsEveryFlag(t *testing.T) {
	text := readme(t)
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.AddMutationFlags(fs)
	config.AddPolicyFlags(fs)
	config.AddClusterFlags(fs)
	config.AddServeFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(text, "`--"+f.Name) && !strings.Contains(text, ", `--"+f.Name+"`") {
			t.Errorf("README.md does not document --%s", f.Name)
		}
	})
}

func TestReadmeDocumentsEveryMetric(t *testing.T) {
	text := readme(t)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	m := reflect.ValueOf(metrics.New()).Elem()
	n := 0
	for i := 0; i < m.NumField(); i++ {
		c, ok := m.Field(i).Interface().(prometheus.Collector)
		if !ok || m.Type().Field(i).Name == "Registry" {
			continue
		}
		descs := make(chan *prometheus.Desc, 4)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			name := fqName.FindStringSubmatch(d.String())
			if name == nil {
				t.Fatalf("no name in %s", d)
			}
			n++
			if !strings.Contains(text, "`"+name[1]+"`") {
				t.Errorf("README.md does not document the metric %s", name[1])
			}
		}
	}
	if n < 18 {
		t.Fatalf("found only %d metrics in metrics.Metrics", n)
	}
}
