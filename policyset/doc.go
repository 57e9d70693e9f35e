// Package policyset manages the policy bundles at run time: it loads them, compiles
// them, runs their Rego tests and atomically activates the result as a new
// generation, and it watches the --bundle directories and the bundle ConfigMaps so
// that every change is picked up without a restart.
//
// The rule it enforces is that a broken bundle never replaces a working one. Each
// bundle lives in a slot (the embedded default bundle, a --bundle directory, a
// ConfigMap); a rebuild tries every slot's current content, and when that fails it
// holds the slot the failure is attributed to at the version that is active (or leaves
// it out when it never was active) and tries again with the rest. So a broken
// ConfigMap leaves the active generation as it is, while changes to other bundles
// still go through. At startup the default bundle and the directories have no active
// version to fall back to: they are the operator's explicit configuration and a
// failure there is returned by Start.
//
// The admission path only ever reads an atomic pointer (Manager.Current): loading,
// compiling and testing happen on the manager's own goroutine.
package policyset
