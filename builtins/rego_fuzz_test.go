package builtins

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/rego"
)

// The annotation parsers of the default bundle are these built-ins, called from Rego.
// Each fuzz target evaluates the built-in the way a policy does (a prepared Rego query
// over input) and compares the answer with the Go function upstream uses for that
// annotation: strconv.ParseBool (sts-regional-endpoints), strconv.ParseInt base 10
// (token-expiration) and the first record of encoding/csv (skip-containers).
//
// Inputs that are not valid UTF-8 are skipped: annotation values reach the webhook as
// JSON strings, which cannot carry them (the decoder replaces them with U+FFFD before
// any built-in sees them).

var (
	queriesOnce sync.Once
	queries     map[string]rego.PreparedEvalQuery
	queriesErr  error
)

// preparedQueries prepares one query per built-in, each binding x to the built-in's
// answer for input.s (no result when the answer is undefined).
func preparedQueries(t testing.TB) map[string]rego.PreparedEvalQuery {
	t.Helper()
	queriesOnce.Do(func() {
		RegisterRego()
		queries = map[string]rego.PreparedEvalQuery{}
		for _, name := range []string{ParseBoolName, ParseIntName, CSVRecordName} {
			q, err := rego.New(rego.Query("x := " + name + "(input.s)")).PrepareForEval(context.Background())
			if err != nil {
				queriesErr = err
				return
			}
			queries[name] = q
		}
	})
	if queriesErr != nil {
		t.Fatalf("preparing the built-in queries: %v", queriesErr)
	}
	return queries
}

// evalBuiltin returns the built-in's answer for s, and whether it was defined.
func evalBuiltin(t *testing.T, name, s string) (any, bool) {
	t.Helper()
	rs, err := preparedQueries(t)[name].Eval(context.Background(), rego.EvalInput(map[string]any{"s": s}))
	if err != nil {
		t.Fatalf("%s(%q): evaluation error %v (a bad value must make it undefined, not fail)", name, s, err)
	}
	if len(rs) == 0 {
		return nil, false
	}
	if len(rs) != 1 {
		t.Fatalf("%s(%q): %d results", name, s, len(rs))
	}
	return rs[0].Bindings["x"], true
}

func FuzzParseBool(f *testing.F) {
	for _, s := range []string{"", "1", "0", "t", "T", "f", "F", "true", "TRUE", "True", "false", "FALSE", "False",
		"tRuE", "yes", "no", " true", "true ", "01", "on", "\x00"} {
		f.Add(s)
	}
	preparedQueries(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		want, werr := strconv.ParseBool(s)
		got, defined := evalBuiltin(t, ParseBoolName, s)
		if werr != nil {
			if defined {
				t.Fatalf("parse_bool(%q) = %v, want undefined (strconv.ParseBool: %v)", s, got, werr)
			}
			return
		}
		if !defined || got != want {
			t.Fatalf("parse_bool(%q) = %v (defined %v), want %v", s, got, defined, want)
		}
	})
}

func FuzzParseInt(f *testing.F) {
	for _, s := range []string{"", "0", "600", "-5", "+7", "86400", "3600s", "1h", " 1", "1 ", "1_000", "0x10", "1e3", "1.0",
		"007", "-0", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"99999999999999999999999", "٣", "１"} {
		f.Add(s)
	}
	preparedQueries(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		want, werr := strconv.ParseInt(s, 10, 64)
		got, defined := evalBuiltin(t, ParseIntName, s)
		if werr != nil {
			if defined {
				t.Fatalf("parse_int(%q) = %v, want undefined (strconv.ParseInt: %v)", s, got, werr)
			}
			return
		}
		if !defined {
			t.Fatalf("parse_int(%q) is undefined, want %d", s, want)
		}
		// Rego numbers reach Go as json.Number: compare the exact decimal text, so a
		// float detour (precision lost above 2^53) would show.
		n, ok := got.(json.Number)
		if !ok || string(n) != strconv.FormatInt(want, 10) {
			t.Fatalf("parse_int(%q) = %#v, want %d", s, got, want)
		}
	})
}

// FuzzCSVRecord compares pod_identity.csv_record, and FirstCSVRecord under it, with
// what upstream does with the skip-containers annotation:
// csv.NewReader(strings.NewReader(v)).Read(), an error meaning "skip nothing". An
// empty value is no record for both (upstream gets io.EOF; the built-in returns []).
func FuzzCSVRecord(f *testing.F) {
	for _, s := range []string{"", "a", "a,b", "a, b", " a ,b ", `"a,b",c`, `a"b,c`, `"a""b"`, `"a`, "a\nb,c", "\na,b",
		"\r\n", "a\r\nb", "\"a\nb\",c", ",", ",,", "a,", "\"\"", "#a,b", "a;b", "a\tb", "\ufeffa", "\"a\"b", "a\rb"} {
		f.Add(s)
	}
	preparedQueries(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		want, werr := csv.NewReader(strings.NewReader(s)).Read()
		if s == "" {
			want, werr = nil, nil
		}
		direct, derr := FirstCSVRecord(s)
		if (derr != nil) != (werr != nil) || !reflect.DeepEqual(direct, want) {
			t.Fatalf("FirstCSVRecord(%q) = %q, %v; encoding/csv's first record: %q, %v", s, direct, derr, want, werr)
		}
		got, defined := evalBuiltin(t, CSVRecordName, s)
		if werr != nil {
			if defined {
				t.Fatalf("csv_record(%q) = %v, want undefined (encoding/csv: %v)", s, got, werr)
			}
			return
		}
		if !defined {
			t.Fatalf("csv_record(%q) is undefined, want %q", s, want)
		}
		arr, ok := got.([]any)
		if !ok || len(arr) != len(want) {
			t.Fatalf("csv_record(%q) = %#v, want %q", s, got, want)
		}
		for i := range want {
			if arr[i] != want[i] {
				t.Fatalf("csv_record(%q)[%d] = %#v, want %q", s, i, arr[i], want[i])
			}
		}
	})
}
