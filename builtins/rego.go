// Package builtins holds the project's own Rego built-ins and CEL functions. They are
// registered in the engine and in the embedded `opa` command, so a policy that uses
// them behaves the same at admission, in `eval` and in `opa test`.
//
// Every built-in here is deterministic: policies must stay pure functions of their
// input (see docs/policies.md, "Sandbox").
package builtins

import (
	"encoding/csv"
	"errors"
	"hash/fnv"
	"math/big"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// Names of the Rego built-ins, as policies call them.
const (
	ParseBoolName = "pod_identity.parse_bool"
	ParseIntName  = "pod_identity.parse_int"
	CSVRecordName = "pod_identity.csv_record"
	CleanJoinName = "pod_identity.clean_join"
	JitterName    = "pod_identity.jitter"
)

var registerOnce sync.Once

// RegisterRego adds the project's built-ins to OPA's global registry. It is safe to call
// more than once; the engine and the `opa` command both call it before compiling.
func RegisterRego() {
	registerOnce.Do(func() {
		rego.RegisterBuiltin1(&rego.Function{
			Name:        ParseBoolName,
			Description: "Parses s with Go strconv.ParseBool rules; undefined when s is not a boolean.",
			Decl:        types.NewFunction(types.Args(types.Named("s", types.S)), types.Named("b", types.B)),
		}, parseBool)
		rego.RegisterBuiltin1(&rego.Function{
			Name:        ParseIntName,
			Description: "Parses s as a base-10 signed 64-bit integer (Go strconv.ParseInt); undefined otherwise.",
			Decl:        types.NewFunction(types.Args(types.Named("s", types.S)), types.Named("n", types.N)),
		}, parseInt)
		rego.RegisterBuiltin1(&rego.Function{
			Name:        CSVRecordName,
			Description: "Returns the fields of the first CSV record of s (Go encoding/csv defaults); undefined when s is not valid CSV.",
			Decl: types.NewFunction(types.Args(types.Named("s", types.S)),
				types.Named("fields", types.NewArray(nil, types.S))),
		}, csvRecord)
		rego.RegisterBuiltin2(&rego.Function{
			Name:        CleanJoinName,
			Description: "Joins dir and file and cleans the result like Go filepath.Join.",
			Decl: types.NewFunction(types.Args(types.Named("dir", types.S), types.Named("file", types.S)),
				types.Named("path", types.S)),
		}, cleanJoin)
		rego.RegisterBuiltin3(&rego.Function{
			Name:        JitterName,
			Description: "Returns an integer in [lo, hi] chosen by a hash of key; the same key always gives the same value.",
			Decl: types.NewFunction(
				types.Args(types.Named("key", types.S), types.Named("lo", types.N), types.Named("hi", types.N)),
				types.Named("n", types.N)),
		}, jitter)
	})
}

// errUndefined makes a built-in's result undefined (OPA treats a nil term that way)
// without raising an error, the Rego idiom for "this input has no answer".
var errUndefined error

func parseBool(_ rego.BuiltinContext, s *ast.Term) (*ast.Term, error) {
	str, ok := s.Value.(ast.String)
	if !ok {
		return nil, errUndefined
	}
	b, err := strconv.ParseBool(string(str))
	if err != nil {
		return nil, errUndefined
	}
	return ast.BooleanTerm(b), nil
}

func parseInt(_ rego.BuiltinContext, s *ast.Term) (*ast.Term, error) {
	str, ok := s.Value.(ast.String)
	if !ok {
		return nil, errUndefined
	}
	n, err := strconv.ParseInt(string(str), 10, 64)
	if err != nil {
		return nil, errUndefined
	}
	return ast.InternedTerm(int(n)), nil
}

func csvRecord(_ rego.BuiltinContext, s *ast.Term) (*ast.Term, error) {
	str, ok := s.Value.(ast.String)
	if !ok {
		return nil, errUndefined
	}
	fields, err := FirstCSVRecord(string(str))
	if err != nil {
		return nil, errUndefined
	}
	terms := make([]*ast.Term, len(fields))
	for i, f := range fields {
		terms[i] = ast.StringTerm(f)
	}
	return ast.ArrayTerm(terms...), nil
}

// FirstCSVRecord reads the first record of s with encoding/csv defaults: comma
// separator, quotes honoured, leading spaces kept. An empty s has no fields.
func FirstCSVRecord(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	r := csv.NewReader(strings.NewReader(s))
	// The default FieldsPerRecord (0) pins the count to the first record; only the
	// first record is read, so it never matters, but -1 states the intent.
	r.FieldsPerRecord = -1
	return r.Read()
}

func cleanJoin(_ rego.BuiltinContext, dir, file *ast.Term) (*ast.Term, error) {
	d, ok1 := dir.Value.(ast.String)
	f, ok2 := file.Value.(ast.String)
	if !ok1 || !ok2 {
		return nil, errUndefined
	}
	return ast.StringTerm(filepath.Join(string(d), string(f))), nil
}

func jitter(_ rego.BuiltinContext, key, lo, hi *ast.Term) (*ast.Term, error) {
	k, ok := key.Value.(ast.String)
	if !ok {
		return nil, errUndefined
	}
	l, okl := intOf(lo)
	h, okh := intOf(hi)
	if !okl || !okh {
		return nil, errors.New(JitterName + ": lo and hi must be integers")
	}
	if h < l {
		return nil, errors.New(JitterName + ": hi must not be below lo")
	}
	return ast.InternedTerm(int(Jitter(string(k), l, h))), nil
}

// Jitter maps key to an integer in [lo, hi] with FNV-1a, so the value is spread over the
// range across keys but fixed for one key (a re-invocation for the same pod agrees).
func Jitter(key string, lo, hi int64) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	span := new(big.Int).SetUint64(uint64(hi - lo + 1))
	off := new(big.Int).Mod(new(big.Int).SetUint64(h.Sum64()), span)
	return lo + off.Int64()
}

func intOf(t *ast.Term) (int64, bool) {
	n, ok := t.Value.(ast.Number)
	if !ok {
		return 0, false
	}
	return n.Int64()
}
