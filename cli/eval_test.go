package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// run executes the command line in-process.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const (
	samplePod  = "../samples/pod.yaml"
	sampleSA   = "../samples/serviceaccount.yaml"
	sampleNoSA = "../samples/serviceaccount-no-role.yaml"
)

func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvalOutputs(t *testing.T) {
	code, out, errOut := run(t, "", "eval", "--pod", samplePod, "--service-account", sampleSA, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var pod map[string]any
	if err := json.Unmarshal([]byte(out), &pod); err != nil {
		t.Fatalf("-o json is not JSON: %v", err)
	}
	if !strings.Contains(out, `"AWS_ROLE_ARN"`) || !strings.Contains(out, "arn:aws:iam::111122223333:role/payments-api") {
		t.Errorf("-o json lacks the role:\n%s", out)
	}

	code, out, _ = run(t, "", "eval", "--pod", samplePod, "--service-account", sampleSA, "-o", "yaml")
	var y map[string]any
	if code != 0 || yaml.Unmarshal([]byte(out), &y) != nil || y["kind"] != "Pod" {
		t.Errorf("-o yaml: exit %d, output:\n%s", code, out)
	}

	code, out, _ = run(t, "", "eval", "--pod", samplePod, "--service-account", sampleSA, "-o", "patch")
	var ops []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ops) != nil || len(ops) == 0 {
		t.Fatalf("-o patch: exit %d, output:\n%s", code, out)
	}
	for _, op := range ops {
		if op["op"] != "add" || strings.HasSuffix(op["path"].(string), "/containers") {
			t.Errorf("not a minimal additive op: %v", op)
		}
	}

	// Unmutated: the pod unchanged, an empty patch, exit 0.
	code, out, _ = run(t, "", "eval", "--pod", samplePod, "-o", "patch")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("no ServiceAccount: exit %d, patch %q", code, out)
	}
}

// The acceptance check: a pod whose ServiceAccount lacks the role annotation is
// explained by naming the policy and the CEL condition that was false.
func TestEvalExplainNamesPolicyAndCondition(t *testing.T) {
	code, out, errOut := run(t, "", "eval", "--pod", samplePod, "--service-account", sampleNoSA, "-o", "explain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`ServiceAccount "payments-api" (found)`,
		"SKIPPED  default/web-identity",
		`condition "role-arn-found" was false`,
		"(params.annotationPrefix + '/role-arn') in serviceAccount.metadata.annotations",
		`where params.annotationPrefix = "eks.amazonaws.com"`,
		"result: not mutated",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

// The acceptance check: a site rule added only as files in a new --bundle directory
// changes eval's output, with no rebuild.
func TestEvalSiteBundleFromFiles(t *testing.T) {
	dir := t.TempDir()
	writeTemp(t, dir, "site/manifest.yaml", `apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: site
policies:
  - name: team-label
    match:
      - name: has-role-env
        expression: object.spec.containers.exists(c, has(c.env) && c.env.exists(e, e.name == 'AWS_ROLE_ARN'))
    rule: data.site.team.mutations
`)
	writeTemp(t, dir, "site/team.rego", `package site.team

mutations contains {"op": "set-label", "key": "example.com/aws-identity", "value": "irsa"}
`)
	args := []string{"eval", "--pod", samplePod, "--service-account", sampleSA, "-o", "json"}
	_, without, _ := run(t, "", args...)
	code, with, errOut := run(t, "", append(args, "--bundle", filepath.Join(dir, "site"))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(without, "example.com/aws-identity") || !strings.Contains(with, `"example.com/aws-identity": "irsa"`) {
		t.Fatalf("the site rule did not change the output:\nwithout:\n%s\nwith:\n%s", without, with)
	}
	// --no-default-bundle leaves only the site rule, which then does not match.
	code, alone, _ := run(t, "", append(args, "--bundle", filepath.Join(dir, "site"), "--no-default-bundle")...)
	if code != 0 || strings.Contains(alone, "AWS_ROLE_ARN") || strings.Contains(alone, "example.com/aws-identity") {
		t.Fatalf("--no-default-bundle: exit %d\n%s", code, alone)
	}
}

func TestEvalExitCodes(t *testing.T) {
	dir := t.TempDir()
	failing := filepath.Join(dir, "failing")
	writeTemp(t, dir, "failing/manifest.yaml", "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: failing\npolicies:\n  - name: image\n    rule: data.failing.m\n")
	writeTemp(t, dir, "failing/m.rego", "package failing\n\nm := [{\"op\": \"json-patch\", \"patch\": [{\"op\": \"replace\", \"path\": \"/spec/containers/0/image\", \"value\": \"x\"}]}]\n")
	broken := filepath.Join(dir, "broken")
	writeTemp(t, dir, "broken/manifest.yaml", "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: broken\n")
	writeTemp(t, dir, "broken/m.rego", "package broken\n\nm := [\n")

	cases := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr []string
	}{
		{"no --pod", "", []string{"eval"}, 2, []string{"--pod: required"}},
		{"bad output", "", []string{"eval", "--pod", samplePod, "-o", "xml"}, 2, []string{"--output: must be yaml, json, patch or explain"}},
		{"unknown flag", "", []string{"eval", "--pod", samplePod, "--regon", "x"}, 2, []string{"unknown flag: --regon"}},
		{"missing pod file", "", []string{"eval", "--pod", filepath.Join(dir, "nope.yaml")}, 2, []string{"nope.yaml: cannot read"}},
		{"missing bundle dir", "", []string{"eval", "--pod", samplePod, "--bundle", filepath.Join(dir, "nope")}, 2, []string{"nope", "cannot read bundle directory"}},
		{"broken Rego", "", []string{"eval", "--pod", samplePod, "--bundle", broken}, 2, []string{"m.rego:4: unexpected eof"}},
		{"policy failure", "", []string{"eval", "--pod", samplePod, "--service-account", sampleSA, "--bundle", failing}, 1,
			[]string{"policy failing/image failed", "/spec/containers/0/image is not allowed"}},
		{"pod from stdin", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n", []string{"eval", "--pod", "-", "-o", "patch"}, 0, nil},
		{"both from stdin", "", []string{"eval", "--pod", "-", "--service-account", "-"}, 2, []string{"cannot both read stdin"}},
		{"bad config file", "", []string{"eval", "--pod", samplePod, "--config", writeTemp(t, dir, "c.yaml", "regon: x\n")}, 2, []string{"c.yaml", "regon: unknown option"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q lacks %q", stderr, s)
				}
			}
			if tc.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("want one line on stderr, got:\n%s", stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "", "version")
	if code != 0 || strings.TrimSpace(out) != Version {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

func TestPartitionForRegion(t *testing.T) {
	for region, want := range map[string]string{
		"us-west-2": "aws", "eu-central-1": "aws", "cn-north-1": "aws-cn", "us-gov-west-1": "aws-us-gov",
		"us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b", "eusc-de-east-1": "aws-eusc", "": "aws",
	} {
		if got := partitionForRegion(region); got != want {
			t.Errorf("partitionForRegion(%q) = %q, want %q", region, got, want)
		}
	}
}

// Each example site bundle runs on the IR machine (no rule falls back to topdown) and
// gives the pod topdown gives.
func TestExamplesAgreeAcrossEvaluators(t *testing.T) {
	dirs, err := filepath.Glob("../examples/*")
	if err != nil || len(dirs) < 4 {
		t.Fatalf("examples: %v %v", dirs, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			args := []string{"eval", "--bundle", dir, "--pod", filepath.Join(dir, "pod.yaml"),
				"--service-account", filepath.Join(dir, "serviceaccount.yaml")}
			if _, err := os.Stat(filepath.Join(dir, "namespace.yaml")); err == nil {
				args = append(args, "--namespace", filepath.Join(dir, "namespace.yaml"))
			}
			out := map[string]string{}
			for _, ev := range []string{"ir", "topdown"} {
				code, stdout, stderr := run(t, "", append(args, "--policy-evaluator="+ev, "-o", "json")...)
				if code != 0 {
					t.Fatalf("%s: exit %d: %s", ev, code, stderr)
				}
				out[ev] = stdout
			}
			if out["ir"] != out["topdown"] {
				t.Errorf("the evaluators disagree:\nir:\n%s\ntopdown:\n%s", out["ir"], out["topdown"])
			}
			_, explain, _ := run(t, "", append(args, "-o", "explain")...)
			if strings.Contains(explain, "evaluated by topdown") {
				t.Errorf("a rule of the example fell back to topdown:\n%s", explain)
			}
			if !strings.Contains(explain, "AWS_ROLE_ARN") {
				t.Errorf("explain shows no identity:\n%s", explain)
			}
		})
	}
}
