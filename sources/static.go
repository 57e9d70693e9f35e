package sources

import (
	"context"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// Static answers from fixed data: what eval and tests use. A nil field means the
// source is absent.
type Static struct {
	ServiceAccounts []*engine.ServiceAccount
	Namespaces      []*engine.NamespaceObject
	IdentitySet     Identities
	RoleMappings    RoleMappings
}

// ServiceAccount returns the matching ServiceAccount; Static never waits.
func (s *Static) ServiceAccount(_ context.Context, namespace, name string, _ bool) (*engine.ServiceAccount, error) {
	for _, sa := range s.ServiceAccounts {
		if sa.Namespace == namespace && sa.Name == name {
			return sa, nil
		}
	}
	return nil, nil
}

// IdentitiesFor is the engine's view of the identities and ConfigMap for one
// ServiceAccount; shared by Static and the cluster sources.
func IdentitiesFor(ids Identities, mappings RoleMappings, namespace, name string) engine.Identities {
	return engine.Identities{
		ContainerCredentials: ids.Lookup(namespace, name),
		ConfigMap:            mappings.Lookup(namespace, name),
	}
}

// Identities returns the identities-file and ConfigMap entries.
func (s *Static) Identities(namespace, name string) engine.Identities {
	return IdentitiesFor(s.IdentitySet, s.RoleMappings, namespace, name)
}

// Namespace returns the matching Namespace.
func (s *Static) Namespace(_ context.Context, name string) *engine.NamespaceObject {
	for _, ns := range s.Namespaces {
		if ns.Name == name {
			return ns
		}
	}
	return nil
}
