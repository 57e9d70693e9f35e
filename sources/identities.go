package sources

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// Identities is the container-credentials (EKS Pod Identity) identities file: the
// (namespace, ServiceAccount) pairs that get container credentials.
type Identities map[[2]string]bool

// Lookup reports whether the pair is listed; matching is exact, there are no wildcards.
func (ids Identities) Lookup(namespace, name string) *engine.ContainerCredentialsIdentity {
	if !ids[[2]string{namespace, name}] {
		return nil
	}
	return &engine.ContainerCredentialsIdentity{Namespace: namespace, ServiceAccount: name}
}

// ParseIdentities parses {"identities":[{"namespace":"ns","serviceAccount":"sa"}, ...]}.
// An empty (or all-whitespace) file lists nobody, as upstream. Unknown fields are
// ignored; an entry without a namespace or serviceAccount is an error.
func ParseIdentities(data []byte) (Identities, error) {
	ids := Identities{}
	if strings.TrimSpace(string(data)) == "" {
		return ids, nil
	}
	var doc struct {
		Identities []struct {
			Namespace      string `json:"namespace"`
			ServiceAccount string `json:"serviceAccount"`
		} `json:"identities"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON identities document ({\"identities\":[{\"namespace\":...,\"serviceAccount\":...}]}): %v", err)
	}
	for i, id := range doc.Identities {
		if id.Namespace == "" || id.ServiceAccount == "" {
			return nil, fmt.Errorf("identities[%d]: needs both \"namespace\" and \"serviceAccount\"", i)
		}
		ids[[2]string{id.Namespace, id.ServiceAccount}] = true
	}
	return ids, nil
}
