// Package v1 is the subset of k8s.io/apimachinery/pkg/apis/meta/v1 the
// podtrace workload needs. Field order follows the real package so that
// struct offsets (which a tracer reads from memory) are the real ones.
package v1

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TypeMeta describes an individual object in an API response or request.
// Two strings: 32 bytes on 64-bit platforms.
type TypeMeta struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// Time is a wrapper around time.Time (24 bytes).
type Time struct {
	time.Time `protobuf:"-"`
}

// Now returns the current local time.
func Now() Time {
	return Time{time.Now()}
}

// ObjectMeta is metadata that all persisted resources must have.
//
// Offsets (amd64/arm64), relative to the start of ObjectMeta:
//
//	Name 0, GenerateName 16, Namespace 32, SelfLink 48, UID 64,
//	ResourceVersion 80, Generation 96, CreationTimestamp 104,
//	DeletionTimestamp 128, DeletionGracePeriodSeconds 136, Labels 144,
//	Annotations 152, OwnerReferences 160, Finalizers 184, ManagedFields 208;
//	size 232.
type ObjectMeta struct {
	Name                       string               `json:"name,omitempty"`
	GenerateName               string               `json:"generateName,omitempty"`
	Namespace                  string               `json:"namespace,omitempty"`
	SelfLink                   string               `json:"selfLink,omitempty"`
	UID                        types.UID            `json:"uid,omitempty"`
	ResourceVersion            string               `json:"resourceVersion,omitempty"`
	Generation                 int64                `json:"generation,omitempty"`
	CreationTimestamp          Time                 `json:"creationTimestamp,omitempty"`
	DeletionTimestamp          *Time                `json:"deletionTimestamp,omitempty"`
	DeletionGracePeriodSeconds *int64               `json:"deletionGracePeriodSeconds,omitempty"`
	Labels                     map[string]string    `json:"labels,omitempty"`
	Annotations                map[string]string    `json:"annotations,omitempty"`
	OwnerReferences            []OwnerReference     `json:"ownerReferences,omitempty"`
	Finalizers                 []string             `json:"finalizers,omitempty"`
	ManagedFields              []ManagedFieldsEntry `json:"managedFields,omitempty"`
}

// OwnerReference contains enough information to let you identify an owning object.
type OwnerReference struct {
	APIVersion         string    `json:"apiVersion"`
	Kind               string    `json:"kind"`
	Name               string    `json:"name"`
	UID                types.UID `json:"uid"`
	Controller         *bool     `json:"controller,omitempty"`
	BlockOwnerDeletion *bool     `json:"blockOwnerDeletion,omitempty"`
}

// ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of
// the resource that the fieldset applies to (fields simplified).
type ManagedFieldsEntry struct {
	Manager     string `json:"manager,omitempty"`
	Operation   string `json:"operation,omitempty"`
	APIVersion  string `json:"apiVersion,omitempty"`
	Time        *Time  `json:"time,omitempty"`
	FieldsType  string `json:"fieldsType,omitempty"`
	FieldsV1    []byte `json:"fieldsV1,omitempty"`
	Subresource string `json:"subresource,omitempty"`
}

// GetName returns the object name.
func (meta *ObjectMeta) GetName() string { return meta.Name }

// GetNamespace returns the object namespace.
func (meta *ObjectMeta) GetNamespace() string { return meta.Namespace }

// GetUID returns the object UID.
func (meta *ObjectMeta) GetUID() types.UID { return meta.UID }
