// Package sources turns cluster and file inputs into what the engine's policies read:
// the kOps pod-identity-webhook ConfigMap, the container-credentials identities file,
// ServiceAccounts and Namespaces. The parsers here are pure; the informers and file
// watchers that feed them live beside them.
package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// RoleMappingConfigMapName and RoleMappingKey are where kOps puts ServiceAccount-to-role
// mappings: ConfigMap pod-identity-webhook, data key "config".
const (
	RoleMappingConfigMapName = "pod-identity-webhook"
	RoleMappingKey           = "config"
)

// RoleMapping is one ServiceAccount's entry.
type RoleMapping struct {
	RoleARN         string
	Audience        string
	UseRegionalSTS  bool
	TokenExpiration int64
}

// RoleMappings is the parsed ConfigMap: keys are "<namespace>/<name>", namespace may
// be the literal "*" (any namespace).
type RoleMappings map[string]RoleMapping

// Lookup finds the entry for a ServiceAccount: the exact key first, then "*/<name>".
func (m RoleMappings) Lookup(namespace, name string) *engine.ConfigMapEntry {
	key := namespace + "/" + name
	e, ok := m[key]
	wildcard := false
	if !ok {
		key = "*/" + name
		if e, ok = m[key]; !ok {
			return nil
		}
		wildcard = true
	}
	return &engine.ConfigMapEntry{Key: key, Wildcard: wildcard, RoleARN: e.RoleARN, Audience: e.Audience,
		UseRegionalSTS: e.UseRegionalSTS, TokenExpiration: e.TokenExpiration}
}

// KeyProblem is a ConfigMap key that was skipped, and why.
type KeyProblem struct {
	Key    string
	Reason string
}

func (p KeyProblem) Error() string { return fmt.Sprintf("key %q: %s", p.Key, p.Reason) }

// ParseRoleMappings parses the "config" value of the kOps ConfigMap: a JSON object
// from "<namespace>/<serviceAccount>" to {"RoleARN", "Audience", "UseRegionalSTS",
// "TokenExpiration"} (field names match case-insensitively, unknown fields are
// ignored, as upstream).
//
// Invalid JSON, or an entry of the wrong shape, is an error and nothing is returned:
// the caller keeps what it had. A key without "/" is skipped and reported as a
// problem; upstream panicked on it. As upstream, text after a second "/" is ignored
// ("a/b/c" maps ServiceAccount b in namespace a), and reported.
func ParseRoleMappings(config string) (RoleMappings, []KeyProblem, error) {
	var raw map[string]json.RawMessage
	if strings.TrimSpace(config) == "" {
		return RoleMappings{}, nil, nil
	}
	if err := json.Unmarshal([]byte(config), &raw); err != nil {
		return nil, nil, fmt.Errorf("data.%s: not a JSON object of \"<namespace>/<serviceAccount>\" keys: %v", RoleMappingKey, err)
	}
	out := RoleMappings{}
	var problems []KeyProblem
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		var e RoleMapping
		dec := json.NewDecoder(bytes.NewReader(raw[key]))
		if err := dec.Decode(&e); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, nil, fmt.Errorf("data.%s: key %q: field %s: expected %s, got a JSON %s", RoleMappingKey, key, te.Field, te.Type, te.Value)
			}
			return nil, nil, fmt.Errorf("data.%s: key %q: %v", RoleMappingKey, key, err)
		}
		parts := strings.Split(key, "/")
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			problems = append(problems, KeyProblem{Key: key, Reason: "not of the form <namespace>/<serviceAccount> (or */<serviceAccount>); skipped"})
			continue
		}
		if len(parts) > 2 {
			// Keys are visited in sorted order, so "a/b/c" comes after "a/b"; the exact
			// key wins (upstream's pick depended on map order).
			if _, exact := raw[parts[0]+"/"+parts[1]]; exact {
				problems = append(problems, KeyProblem{Key: key, Reason: fmt.Sprintf("skipped: the key %q maps the same ServiceAccount", parts[0]+"/"+parts[1])})
				continue
			}
			problems = append(problems, KeyProblem{Key: key, Reason: fmt.Sprintf("text after the second '/' is ignored: maps ServiceAccount %q in namespace %q", parts[1], parts[0])})
		}
		out[parts[0]+"/"+parts[1]] = e
	}
	return out, problems, nil
}
