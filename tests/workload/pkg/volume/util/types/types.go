// Package types defines types used only by volume components
// (k8s.io/kubernetes/pkg/volume/util/types, imported by kubelet as volumetypes).
package types

import "k8s.io/apimachinery/pkg/types"

// UniquePodName defines the type to key pods off of. For ordinary pods it is
// the pod UID (see util.GetUniquePodName), so a UniquePodName argument is a
// Go string header {ptr, len} holding the UID.
type UniquePodName types.UID

// UniquePVCName defines the type to key pvc off.
type UniquePVCName types.UID
