// Package types is the subset of k8s.io/apimachinery/pkg/types the podtrace
// workload needs.
package types

// UID is a type that holds unique ID values, including UUIDs. Like the real
// one it is a plain string, so a UID field is a Go string header {ptr, len}.
type UID string

// NamespacedName comprises a resource name, with a mandatory namespace.
type NamespacedName struct {
	Namespace string
	Name      string
}

// String returns the general purpose string representation.
func (n NamespacedName) String() string {
	return n.Namespace + "/" + n.Name
}

// NodeName is a type that holds a api.Node's Name identifier.
type NodeName string
