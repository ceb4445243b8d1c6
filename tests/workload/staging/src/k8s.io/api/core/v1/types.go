// Package v1 is the subset of k8s.io/api/core/v1 the podtrace workload needs.
//
// Field order follows the real package (Kubernetes 1.31-1.33) for every type
// that a tracer may read from memory: Pod, ObjectMeta (from apimachinery),
// PodSpec, Volume, Container. Types the workload never looks into are
// reduced to stubs, but they keep their position and their Go "shape"
// (pointer, slice, map, string) so that the offsets of the fields that
// follow them stay right.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// UniqueVolumeName defines the name of attached volume.
type UniqueVolumeName string

// Pod is a collection of containers that can run on a host.
//
// Offsets (64-bit): TypeMeta 0 (Kind 0, APIVersion 16); ObjectMeta 32
// (Name 32, GenerateName 48, Namespace 64, SelfLink 80, UID 96, ...);
// Spec 264; Status follows Spec. See types_test.go.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PodSpec   `json:"spec,omitempty"`
	Status            PodStatus `json:"status,omitempty"`
}

// PodSpec is a description of a pod.
type PodSpec struct {
	Volumes                       []Volume                   `json:"volumes,omitempty"`
	InitContainers                []Container                `json:"initContainers,omitempty"`
	Containers                    []Container                `json:"containers"`
	EphemeralContainers           []EphemeralContainer       `json:"ephemeralContainers,omitempty"`
	RestartPolicy                 RestartPolicy              `json:"restartPolicy,omitempty"`
	TerminationGracePeriodSeconds *int64                     `json:"terminationGracePeriodSeconds,omitempty"`
	ActiveDeadlineSeconds         *int64                     `json:"activeDeadlineSeconds,omitempty"`
	DNSPolicy                     DNSPolicy                  `json:"dnsPolicy,omitempty"`
	NodeSelector                  map[string]string          `json:"nodeSelector,omitempty"`
	ServiceAccountName            string                     `json:"serviceAccountName,omitempty"`
	DeprecatedServiceAccount      string                     `json:"serviceAccount,omitempty"`
	AutomountServiceAccountToken  *bool                      `json:"automountServiceAccountToken,omitempty"`
	NodeName                      string                     `json:"nodeName,omitempty"`
	HostNetwork                   bool                       `json:"hostNetwork,omitempty"`
	HostPID                       bool                       `json:"hostPID,omitempty"`
	HostIPC                       bool                       `json:"hostIPC,omitempty"`
	ShareProcessNamespace         *bool                      `json:"shareProcessNamespace,omitempty"`
	SecurityContext               *PodSecurityContext        `json:"securityContext,omitempty"`
	ImagePullSecrets              []LocalObjectReference     `json:"imagePullSecrets,omitempty"`
	Hostname                      string                     `json:"hostname,omitempty"`
	Subdomain                     string                     `json:"subdomain,omitempty"`
	Affinity                      *Affinity                  `json:"affinity,omitempty"`
	SchedulerName                 string                     `json:"schedulerName,omitempty"`
	Tolerations                   []Toleration               `json:"tolerations,omitempty"`
	HostAliases                   []HostAlias                `json:"hostAliases,omitempty"`
	PriorityClassName             string                     `json:"priorityClassName,omitempty"`
	Priority                      *int32                     `json:"priority,omitempty"`
	DNSConfig                     *PodDNSConfig              `json:"dnsConfig,omitempty"`
	ReadinessGates                []PodReadinessGate         `json:"readinessGates,omitempty"`
	RuntimeClassName              *string                    `json:"runtimeClassName,omitempty"`
	EnableServiceLinks            *bool                      `json:"enableServiceLinks,omitempty"`
	PreemptionPolicy              *PreemptionPolicy          `json:"preemptionPolicy,omitempty"`
	Overhead                      ResourceList               `json:"overhead,omitempty"`
	TopologySpreadConstraints     []TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	SetHostnameAsFQDN             *bool                      `json:"setHostnameAsFQDN,omitempty"`
	OS                            *PodOS                     `json:"os,omitempty"`
	HostUsers                     *bool                      `json:"hostUsers,omitempty"`
	SchedulingGates               []PodSchedulingGate        `json:"schedulingGates,omitempty"`
	ResourceClaims                []PodResourceClaim         `json:"resourceClaims,omitempty"`
}

// RestartPolicy describes how the container should be restarted.
type RestartPolicy string

// DNSPolicy defines how a pod's DNS will be configured.
type DNSPolicy string

// PreemptionPolicy describes a policy for if/when to preempt a pod.
type PreemptionPolicy string

// PullPolicy describes a policy for if/when to pull a container image.
type PullPolicy string

// PodPhase is a label for the condition of a pod at the current time.
type PodPhase string

// PodQOSClass defines the supported qos classes of Pods.
type PodQOSClass string

// ResourceName is the name identifying various resources in a ResourceList.
type ResourceName string

// ResourceList is a set of (resource name, quantity) pairs (quantity reduced
// to its string form here).
type ResourceList map[ResourceName]string

// Constants used by the workload.
const (
	RestartPolicyAlways  RestartPolicy = "Always"
	DNSClusterFirst      DNSPolicy     = "ClusterFirst"
	PullIfNotPresent     PullPolicy    = "IfNotPresent"
	PodPending           PodPhase      = "Pending"
	PodRunning           PodPhase      = "Running"
	PodSucceeded         PodPhase      = "Succeeded"
	PodFailed            PodPhase      = "Failed"
	PodQOSBestEffort     PodQOSClass   = "BestEffort"
	DefaultSchedulerName               = "default-scheduler"
)

// Volume represents a named volume in a pod that may be accessed by any container in the pod.
type Volume struct {
	Name         string `json:"name"`
	VolumeSource `json:",inline"`
}

// VolumeSource represents the source location of a volume to mount.
// Only one of its members may be specified. All members are pointers, in the
// real order (Image was added in 1.31).
type VolumeSource struct {
	HostPath              *HostPathVolumeSource              `json:"hostPath,omitempty"`
	EmptyDir              *EmptyDirVolumeSource              `json:"emptyDir,omitempty"`
	GCEPersistentDisk     *struct{}                          `json:"gcePersistentDisk,omitempty"`
	AWSElasticBlockStore  *struct{}                          `json:"awsElasticBlockStore,omitempty"`
	GitRepo               *struct{}                          `json:"gitRepo,omitempty"`
	Secret                *SecretVolumeSource                `json:"secret,omitempty"`
	NFS                   *struct{}                          `json:"nfs,omitempty"`
	ISCSI                 *struct{}                          `json:"iscsi,omitempty"`
	Glusterfs             *struct{}                          `json:"glusterfs,omitempty"`
	PersistentVolumeClaim *PersistentVolumeClaimVolumeSource `json:"persistentVolumeClaim,omitempty"`
	RBD                   *struct{}                          `json:"rbd,omitempty"`
	FlexVolume            *struct{}                          `json:"flexVolume,omitempty"`
	Cinder                *struct{}                          `json:"cinder,omitempty"`
	CephFS                *struct{}                          `json:"cephfs,omitempty"`
	Flocker               *struct{}                          `json:"flocker,omitempty"`
	DownwardAPI           *DownwardAPIVolumeSource           `json:"downwardAPI,omitempty"`
	FC                    *struct{}                          `json:"fc,omitempty"`
	AzureFile             *struct{}                          `json:"azureFile,omitempty"`
	ConfigMap             *ConfigMapVolumeSource             `json:"configMap,omitempty"`
	VsphereVolume         *struct{}                          `json:"vsphereVolume,omitempty"`
	Quobyte               *struct{}                          `json:"quobyte,omitempty"`
	AzureDisk             *struct{}                          `json:"azureDisk,omitempty"`
	PhotonPersistentDisk  *struct{}                          `json:"photonPersistentDisk,omitempty"`
	Projected             *ProjectedVolumeSource             `json:"projected,omitempty"`
	PortworxVolume        *struct{}                          `json:"portworxVolume,omitempty"`
	ScaleIO               *struct{}                          `json:"scaleIO,omitempty"`
	StorageOS             *struct{}                          `json:"storageos,omitempty"`
	CSI                   *struct{}                          `json:"csi,omitempty"`
	Ephemeral             *struct{}                          `json:"ephemeral,omitempty"`
	Image                 *struct{}                          `json:"image,omitempty"`
}

// HostPathVolumeSource represents a host path mapped into a pod.
type HostPathVolumeSource struct {
	Path string  `json:"path"`
	Type *string `json:"type,omitempty"`
}

// StorageMedium defines ways that storage can be allocated to a volume.
type StorageMedium string

// EmptyDirVolumeSource represents an empty directory for a pod.
type EmptyDirVolumeSource struct {
	Medium    StorageMedium `json:"medium,omitempty"`
	SizeLimit *string       `json:"sizeLimit,omitempty"`
}

// SecretVolumeSource adapts a Secret into a volume.
type SecretVolumeSource struct {
	SecretName  string      `json:"secretName,omitempty"`
	Items       []KeyToPath `json:"items,omitempty"`
	DefaultMode *int32      `json:"defaultMode,omitempty"`
	Optional    *bool       `json:"optional,omitempty"`
}

// PersistentVolumeClaimVolumeSource references the user's PVC in the same namespace.
type PersistentVolumeClaimVolumeSource struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// DownwardAPIVolumeSource represents a volume containing downward API info.
type DownwardAPIVolumeSource struct {
	Items       []DownwardAPIVolumeFile `json:"items,omitempty"`
	DefaultMode *int32                  `json:"defaultMode,omitempty"`
}

// DownwardAPIVolumeFile represents information to create the file containing the pod field.
type DownwardAPIVolumeFile struct {
	Path     string               `json:"path"`
	FieldRef *ObjectFieldSelector `json:"fieldRef,omitempty"`
	Mode     *int32               `json:"mode,omitempty"`
}

// ObjectFieldSelector selects an APIVersioned field of an object.
type ObjectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath"`
}

// LocalObjectReference contains enough information to let you locate the
// referenced object inside the same namespace.
type LocalObjectReference struct {
	Name string `json:"name,omitempty"`
}

// ConfigMapVolumeSource adapts a ConfigMap into a volume.
type ConfigMapVolumeSource struct {
	LocalObjectReference `json:",inline"`
	Items                []KeyToPath `json:"items,omitempty"`
	DefaultMode          *int32      `json:"defaultMode,omitempty"`
	Optional             *bool       `json:"optional,omitempty"`
}

// KeyToPath maps a string key to a path within a volume.
type KeyToPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Mode *int32 `json:"mode,omitempty"`
}

// ProjectedVolumeSource represents a projected volume source
// (what a kube-api-access-xxxxx volume is).
type ProjectedVolumeSource struct {
	Sources     []VolumeProjection `json:"sources"`
	DefaultMode *int32             `json:"defaultMode,omitempty"`
}

// VolumeProjection that may be projected along with other supported volume types.
type VolumeProjection struct {
	Secret              *SecretVolumeSource            `json:"secret,omitempty"`
	DownwardAPI         *DownwardAPIVolumeSource       `json:"downwardAPI,omitempty"`
	ConfigMap           *ConfigMapVolumeSource         `json:"configMap,omitempty"`
	ServiceAccountToken *ServiceAccountTokenProjection `json:"serviceAccountToken,omitempty"`
	ClusterTrustBundle  *struct{}                      `json:"clusterTrustBundle,omitempty"`
}

// ServiceAccountTokenProjection represents a projected service account token volume.
type ServiceAccountTokenProjection struct {
	Audience          string `json:"audience,omitempty"`
	ExpirationSeconds *int64 `json:"expirationSeconds,omitempty"`
	Path              string `json:"path"`
}

// Container is a single application container that you want to run within a pod.
type Container struct {
	Name                     string               `json:"name"`
	Image                    string               `json:"image,omitempty"`
	Command                  []string             `json:"command,omitempty"`
	Args                     []string             `json:"args,omitempty"`
	WorkingDir               string               `json:"workingDir,omitempty"`
	Ports                    []ContainerPort      `json:"ports,omitempty"`
	EnvFrom                  []struct{}           `json:"envFrom,omitempty"`
	Env                      []EnvVar             `json:"env,omitempty"`
	Resources                ResourceRequirements `json:"resources,omitempty"`
	ResizePolicy             []struct{}           `json:"resizePolicy,omitempty"`
	RestartPolicy            *string              `json:"restartPolicy,omitempty"`
	VolumeMounts             []VolumeMount        `json:"volumeMounts,omitempty"`
	VolumeDevices            []VolumeDevice       `json:"volumeDevices,omitempty"`
	LivenessProbe            *struct{}            `json:"livenessProbe,omitempty"`
	ReadinessProbe           *struct{}            `json:"readinessProbe,omitempty"`
	StartupProbe             *struct{}            `json:"startupProbe,omitempty"`
	Lifecycle                *struct{}            `json:"lifecycle,omitempty"`
	TerminationMessagePath   string               `json:"terminationMessagePath,omitempty"`
	TerminationMessagePolicy string               `json:"terminationMessagePolicy,omitempty"`
	ImagePullPolicy          PullPolicy           `json:"imagePullPolicy,omitempty"`
	SecurityContext          *struct{}            `json:"securityContext,omitempty"`
	Stdin                    bool                 `json:"stdin,omitempty"`
	StdinOnce                bool                 `json:"stdinOnce,omitempty"`
	TTY                      bool                 `json:"tty,omitempty"`
}

// EphemeralContainer is a temporary container added to an existing pod (stub:
// the real one embeds EphemeralContainerCommon, which mirrors Container).
type EphemeralContainer struct {
	EphemeralContainerCommon `json:",inline"`
	TargetContainerName      string `json:"targetContainerName,omitempty"`
}

// EphemeralContainerCommon mirrors Container.
type EphemeralContainerCommon Container

// ContainerPort represents a network port in a single container.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	HostPort      int32  `json:"hostPort,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// EnvVar represents an environment variable present in a Container.
type EnvVar struct {
	Name      string    `json:"name"`
	Value     string    `json:"value,omitempty"`
	ValueFrom *struct{} `json:"valueFrom,omitempty"`
}

// ResourceRequirements describes the compute resource requirements.
type ResourceRequirements struct {
	Limits   ResourceList `json:"limits,omitempty"`
	Requests ResourceList `json:"requests,omitempty"`
	Claims   []struct{}   `json:"claims,omitempty"`
}

// VolumeMount describes a mounting of a Volume within a container.
type VolumeMount struct {
	Name              string  `json:"name"`
	ReadOnly          bool    `json:"readOnly,omitempty"`
	RecursiveReadOnly *string `json:"recursiveReadOnly,omitempty"`
	MountPath         string  `json:"mountPath"`
	SubPath           string  `json:"subPath,omitempty"`
	MountPropagation  *string `json:"mountPropagation,omitempty"`
	SubPathExpr       string  `json:"subPathExpr,omitempty"`
}

// VolumeDevice describes a mapping of a raw block device within a container.
type VolumeDevice struct {
	Name       string `json:"name"`
	DevicePath string `json:"devicePath"`
}

// Stub types that only need to occupy their place in PodSpec.
type (
	PodSecurityContext struct{ RunAsUser *int64 }
	Affinity           struct{}
	Toleration         struct{ Key, Operator, Value, Effect string }
	HostAlias          struct {
		IP        string
		Hostnames []string
	}
	PodDNSConfig             struct{ Nameservers, Searches []string }
	PodReadinessGate         struct{ ConditionType string }
	TopologySpreadConstraint struct{ TopologyKey string }
	PodOS                    struct{ Name string }
	PodSchedulingGate        struct{ Name string }
	PodResourceClaim         struct{ Name string }
)

// PodStatus represents information about the status of a pod.
type PodStatus struct {
	Phase                      PodPhase          `json:"phase,omitempty"`
	Conditions                 []PodCondition    `json:"conditions,omitempty"`
	Message                    string            `json:"message,omitempty"`
	Reason                     string            `json:"reason,omitempty"`
	NominatedNodeName          string            `json:"nominatedNodeName,omitempty"`
	HostIP                     string            `json:"hostIP,omitempty"`
	HostIPs                    []HostIP          `json:"hostIPs,omitempty"`
	PodIP                      string            `json:"podIP,omitempty"`
	PodIPs                     []PodIP           `json:"podIPs,omitempty"`
	StartTime                  *metav1.Time      `json:"startTime,omitempty"`
	InitContainerStatuses      []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses          []ContainerStatus `json:"containerStatuses,omitempty"`
	QOSClass                   PodQOSClass       `json:"qosClass,omitempty"`
	EphemeralContainerStatuses []ContainerStatus `json:"ephemeralContainerStatuses,omitempty"`
	Resize                     string            `json:"resize,omitempty"`
	ResourceClaimStatuses      []struct{}        `json:"resourceClaimStatuses,omitempty"`
}

// PodCondition contains details for the current condition of this pod.
type PodCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// HostIP represents a single IP address allocated to the host.
type HostIP struct {
	IP string `json:"ip"`
}

// PodIP represents a single IP address allocated to the pod.
type PodIP struct {
	IP string `json:"ip"`
}

// ContainerStatus contains details for the current status of this container.
type ContainerStatus struct {
	Name        string `json:"name"`
	Ready       bool   `json:"ready"`
	Image       string `json:"image"`
	ImageID     string `json:"imageID"`
	ContainerID string `json:"containerID,omitempty"`
}

// Secret holds secret data of a certain type (subset).
type Secret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Immutable         *bool             `json:"immutable,omitempty"`
	Data              map[string][]byte `json:"data,omitempty"`
	StringData        map[string]string `json:"stringData,omitempty"`
	Type              string            `json:"type,omitempty"`
}

// PersistentVolume is a storage resource provisioned by an administrator (stub).
type PersistentVolume struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// GetUID is a convenience accessor used by kubelet code.
func (p *Pod) GetUID() types.UID { return p.UID }
