// Package v1 is the subset of k8s.io/cri-api/pkg/apis/runtime/v1 the podtrace
// workload needs. Layouts follow the gogo-generated structs of cri-api
// <= v0.33 (what kubelet 1.31-1.33 and containerd 1.6-2.1 use): the first
// field of every message is its first proto field; XXX_ bookkeeping fields
// are at the end.
package v1

// PodSandboxMetadata holds all necessary information for building the sandbox name.
// Offsets: Name 0, Uid 16, Namespace 32, Attempt 48.
type PodSandboxMetadata struct {
	Name                 string   `protobuf:"bytes,1,opt,name=name,proto3" json:"name,omitempty"`
	Uid                  string   `protobuf:"bytes,2,opt,name=uid,proto3" json:"uid,omitempty"`
	Namespace            string   `protobuf:"bytes,3,opt,name=namespace,proto3" json:"namespace,omitempty"`
	Attempt              uint32   `protobuf:"varint,4,opt,name=attempt,proto3" json:"attempt,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

// PodSandboxConfig holds all the required and optional fields for creating a sandbox.
// Offsets: Metadata 0.
type PodSandboxConfig struct {
	Metadata             *PodSandboxMetadata    `protobuf:"bytes,1,opt,name=metadata,proto3" json:"metadata,omitempty"`
	Hostname             string                 `protobuf:"bytes,2,opt,name=hostname,proto3" json:"hostname,omitempty"`
	LogDirectory         string                 `protobuf:"bytes,3,opt,name=log_directory,json=logDirectory,proto3" json:"log_directory,omitempty"`
	DnsConfig            *DNSConfig             `protobuf:"bytes,4,opt,name=dns_config,json=dnsConfig,proto3" json:"dns_config,omitempty"`
	PortMappings         []*PortMapping         `protobuf:"bytes,5,rep,name=port_mappings,json=portMappings,proto3" json:"port_mappings,omitempty"`
	Labels               map[string]string      `protobuf:"bytes,6,rep,name=labels,proto3" json:"labels,omitempty"`
	Annotations          map[string]string      `protobuf:"bytes,7,rep,name=annotations,proto3" json:"annotations,omitempty"`
	Linux                *LinuxPodSandboxConfig `protobuf:"bytes,8,opt,name=linux,proto3" json:"linux,omitempty"`
	Windows              *struct{}              `protobuf:"bytes,9,opt,name=windows,proto3" json:"windows,omitempty"`
	XXX_NoUnkeyedLiteral struct{}               `json:"-"`
	XXX_sizecache        int32                  `json:"-"`
}

// DNSConfig specifies the DNS servers and search domains of a sandbox.
type DNSConfig struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// PortMapping specifies the port mapping configurations of a sandbox.
type PortMapping struct {
	Protocol      int32  `json:"protocol,omitempty"`
	ContainerPort int32  `json:"container_port,omitempty"`
	HostPort      int32  `json:"host_port,omitempty"`
	HostIp        string `json:"host_ip,omitempty"`
}

// LinuxPodSandboxConfig holds platform-specific configurations for Linux host platforms.
type LinuxPodSandboxConfig struct {
	CgroupParent string            `json:"cgroup_parent,omitempty"`
	Sysctls      map[string]string `json:"sysctls,omitempty"`
}

// ContainerMetadata holds all necessary information for building the container name.
// Offsets: Name 0, Attempt 16.
type ContainerMetadata struct {
	Name                 string   `protobuf:"bytes,1,opt,name=name,proto3" json:"name,omitempty"`
	Attempt              uint32   `protobuf:"varint,2,opt,name=attempt,proto3" json:"attempt,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

// ImageSpec is an internal representation of an image. Offsets: Image 0.
type ImageSpec struct {
	Image                string            `protobuf:"bytes,1,opt,name=image,proto3" json:"image,omitempty"`
	Annotations          map[string]string `json:"annotations,omitempty"`
	UserSpecifiedImage   string            `json:"user_specified_image,omitempty"`
	RuntimeHandler       string            `json:"runtime_handler,omitempty"`
	XXX_NoUnkeyedLiteral struct{}          `json:"-"`
	XXX_sizecache        int32             `json:"-"`
}

// KeyValue is an environment variable.
type KeyValue struct {
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
}

// Mount specifies a host volume to mount into a container.
type Mount struct {
	ContainerPath string `json:"container_path,omitempty"`
	HostPath      string `json:"host_path,omitempty"`
	Readonly      bool   `json:"readonly,omitempty"`
}

// ContainerConfig holds all the required and optional fields for creating a container.
// Offsets: Metadata 0, Image 8.
type ContainerConfig struct {
	Metadata             *ContainerMetadata `protobuf:"bytes,1,opt,name=metadata,proto3" json:"metadata,omitempty"`
	Image                *ImageSpec         `protobuf:"bytes,2,opt,name=image,proto3" json:"image,omitempty"`
	Command              []string           `json:"command,omitempty"`
	Args                 []string           `json:"args,omitempty"`
	WorkingDir           string             `json:"working_dir,omitempty"`
	Envs                 []*KeyValue        `json:"envs,omitempty"`
	Mounts               []*Mount           `json:"mounts,omitempty"`
	Devices              []*struct{}        `json:"devices,omitempty"`
	Labels               map[string]string  `json:"labels,omitempty"`
	Annotations          map[string]string  `json:"annotations,omitempty"`
	LogPath              string             `json:"log_path,omitempty"`
	Stdin                bool               `json:"stdin,omitempty"`
	StdinOnce            bool               `json:"stdin_once,omitempty"`
	Tty                  bool               `json:"tty,omitempty"`
	Linux                *struct{}          `json:"linux,omitempty"`
	Windows              *struct{}          `json:"windows,omitempty"`
	CDIDevices           []*struct{}        `json:"CDI_devices,omitempty"`
	XXX_NoUnkeyedLiteral struct{}           `json:"-"`
	XXX_sizecache        int32              `json:"-"`
}
