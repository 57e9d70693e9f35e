package sources

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseIdentities feeds arbitrary bytes to the container-credentials identities
// file parser. It must never panic; an error is one line (it goes to a log line and a
// readiness message); a document it accepts lists only complete pairs, every one of
// them found by Lookup, and re-encoding what it accepted in the canonical form and
// parsing that again gives the same set.
func FuzzParseIdentities(f *testing.F) {
	for _, s := range []string{``, ` `, "\n", `{}`, `null`, `[]`, `{"identities":null}`, `{"identities":[]}`,
		`{"identities":[{"namespace":"a","serviceAccount":"x"}]}`,
		`{"identities":[{"namespace":"a","serviceAccount":"x"},{"namespace":"a","serviceAccount":"x"}]}`,
		`{"identities":[{"namespace":"a"}]}`, `{"identities":[{"Namespace":"a","SERVICEACCOUNT":"x"}]}`,
		`{"identities":[{"namespace":"a","serviceAccount":"x","extra":{"y":[1]}}],"version":2}`,
		`{"identities":{"namespace":"a"}}`, `{"identities":[null]}`, `{"identities":[{"namespace":1}]}`,
		`{"identities":[{"namespace":"*","serviceAccount":"*"}]}`, `{"identities":[` + "\n", "\xff\xfe{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := ParseIdentities(data)
		if err != nil {
			if ids != nil {
				t.Fatalf("ParseIdentities returned identities %v with the error %v", ids, err)
			}
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("the error is not one line: %q", msg)
			}
			return
		}
		if ids == nil {
			t.Fatal("ParseIdentities returned nil identities and no error")
		}
		type entry struct {
			Namespace      string `json:"namespace"`
			ServiceAccount string `json:"serviceAccount"`
		}
		var doc struct {
			Identities []entry `json:"identities"`
		}
		for pair := range ids {
			ns, sa := pair[0], pair[1]
			if ns == "" || sa == "" {
				t.Fatalf("an incomplete pair was accepted: %q", pair)
			}
			if got := ids.Lookup(ns, sa); got == nil || got.Namespace != ns || got.ServiceAccount != sa {
				t.Fatalf("Lookup(%q, %q) = %+v", ns, sa, got)
			}
			doc.Identities = append(doc.Identities, entry{ns, sa})
		}
		canonical, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseIdentities(canonical)
		if err != nil {
			t.Fatalf("the canonical form of what was accepted is refused: %v\n%s", err, canonical)
		}
		if len(again) != len(ids) {
			t.Fatalf("round trip: %d pairs, then %d", len(ids), len(again))
		}
		for pair := range ids {
			if !again[pair] {
				t.Fatalf("round trip lost %q", pair)
			}
		}
	})
}
