package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func newFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddMutationFlags(fs)
	AddPolicyFlags(fs)
	AddClusterFlags(fs)
	AddServeFlags(fs)
	return fs
}

func TestDefaultsMatchUpstream(t *testing.T) {
	cfg, err := Load(newFlags(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	if !reflect.DeepEqual(*cfg, want) {
		t.Fatalf("loaded defaults\n%+v\nwant\n%+v", *cfg, want)
	}
	// The upstream defaults that deployments rely on (reference, section 1).
	for name, v := range map[string]any{
		"port": 443, "metrics-port": 9999, "in-cluster": true, "namespace": "eks",
		"token-expiration": int64(86400), "annotation-prefix": "eks.amazonaws.com",
		"service-account-lookup-grace-period": time.Duration(0), "resync-period": 60 * time.Second,
		"tls-cert": "/etc/webhook/certs/tls.crt", "tls-key": "/etc/webhook/certs/tls.key",
		"container-credentials-full-uri": "http://169.254.170.23/v1/credentials",
	} {
		if got := field(cfg, name); !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

func field(cfg *Config, name string) any {
	v := reflect.ValueOf(*cfg)
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("koanf") == name {
			return v.Field(i).Interface()
		}
	}
	return nil
}

func TestLayering(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfgFile, []byte("aws-default-region: from-file\ntoken-expiration: 3600\nsts-regional-endpoint: true\nresync-period: 2m\nbundle: [a, b]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := newFlags()
	if err := fs.Parse([]string{"--config", cfgFile, "--token-expiration=7200", "--in-cluster=false"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(fs, []string{"PIW_AWS_DEFAULT_REGION=from-env", "PIW_TOKEN_EXPIRATION=5000", "PIW_PORT=8443", "OTHER=x"})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]any{
		"aws-default-region":    "from-env",         // env over file
		"token-expiration":      int64(7200),        // flag over env over file
		"sts-regional-endpoint": true,               // file over default
		"port":                  8443,               // env over default
		"resync-period":         2 * time.Minute,    // duration from a file string
		"in-cluster":            false,              // flag over default
		"bundle":                []string{"a", "b"}, // list from a file
		"namespace":             "eks",              // default
	}
	for name, want := range checks {
		if got := field(cfg, name); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown file key", []string{"--config", write("a.yaml", "aws-default-regon: x\n")}, nil, "aws-default-regon: unknown option"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "nope.yaml"},
		{"bad yaml", []string{"--config", write("b.yaml", "a: [\n")}, nil, "config file"},
		{"bad type in file", []string{"--config", write("c.yaml", "token-expiration: soon\n")}, nil, "token-expiration"},
		{"unknown env", nil, []string{"PIW_REGON=x"}, "PIW_REGON: unknown option"},
		{"bad env value", nil, []string{"PIW_PORT=https"}, "port"},
		{"negative grace", []string{"--service-account-lookup-grace-period=-1s"}, nil, "must not be negative"},
		{"unknown evaluator", []string{"--policy-evaluator=wasm"}, nil, `policy-evaluator: must be one of [ir topdown], got "wasm"`},
		{"unknown evaluator in env", nil, []string{"PIW_POLICY_EVALUATOR=fast"}, `got "fast"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlags()
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			_, err := Load(fs, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParamsNameEveryMutationFlag(t *testing.T) {
	fs := pflag.NewFlagSet("m", pflag.ContinueOnError)
	AddMutationFlags(fs)
	d := Defaults()
	params := d.Params()
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "watch-container-credentials-config" {
			return // a source, not a param
		}
		camel := camelCase(f.Name)
		if _, ok := params[camel]; !ok {
			t.Errorf("flag --%s has no param %q", f.Name, camel)
		}
	})
}

// camelCase turns a flag name into its param name, with the spellings docs/policies.md uses.
func camelCase(s string) string {
	parts := strings.Split(s, "-")
	for i := 1; i < len(parts); i++ {
		switch parts[i] {
		case "uri":
			parts[i] = "URI"
		case "id":
			parts[i] = "ID"
		case "arn":
			parts[i] = "Arn"
		default:
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	if parts[0] == "aws" && len(parts) > 1 {
		return "aws" + strings.Join(parts[1:], "")
	}
	return strings.Join(parts, "")
}
