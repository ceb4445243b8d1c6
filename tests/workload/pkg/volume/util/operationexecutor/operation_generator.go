package operationexecutor

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/volume/util"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// OperationGenerator interface that extracts out the functions from
// operation_executor to make it dependency injectable.
type OperationGenerator interface {
	// Generates the MountVolume function needed to perform the mount of a
	// volume plugin: SetUp, then actualStateOfWorldMounterUpdater's
	// MarkVolumeAsMounted.
	GenerateMountVolumeFunc(waitForAttachTimeout time.Duration, volumeToMount VolumeToMount, actualStateOfWorldMounterUpdater ActualStateOfWorldMounterUpdater, isRemount bool) volumetypes.GeneratedOperations
}

// NewOperationGenerator returns the operation generator. podsDir is where
// SetUp makes the pods' volume directories (kubelet: the volume plugins'
// host); reportError is told a pod's failed mounts (the volume manager's
// desired state, which the pod's mount wait returns); gt may be nil.
func NewOperationGenerator(podsDir string, reportError func(volumetypes.UniquePodName, string), gt *groundtruth.Recorder) OperationGenerator {
	return &operationGenerator{podsDir: podsDir, reportError: reportError, gt: gt}
}

type operationGenerator struct {
	podsDir     string
	reportError func(volumetypes.UniquePodName, string)
	gt          *groundtruth.Recorder
}

// GenerateMountVolumeFunc returns the operation the executor runs on a
// goroutine of its own: the volume plugin's SetUp, then MarkVolumeAsMounted
// through the ActualStateOfWorldMounterUpdater interface (kubelet's
// `(*operationGenerator).GenerateMountVolumeFunc.func1`).
func (og *operationGenerator) GenerateMountVolumeFunc(
	waitForAttachTimeout time.Duration,
	volumeToMount VolumeToMount,
	actualStateOfWorld ActualStateOfWorldMounterUpdater,
	isRemount bool) volumetypes.GeneratedOperations {

	mountVolumeFunc := func() error {
		// "SetUp" of the volume plugin.
		if err := og.setUpVolume(volumeToMount); err != nil {
			og.reportError(volumeToMount.PodName, err.Error())
			return err
		}
		markOpts := MarkVolumeOpts{
			PodName:             volumeToMount.PodName,
			PodUID:              volumeToMount.Pod.UID,
			VolumeName:          volumeToMount.VolumeName,
			Mounter:             nil,
			OuterVolumeSpecName: volumeToMount.OuterVolumeSpecName,
			VolumeGidVolume:     volumeToMount.VolumeGidValue,
			VolumeSpec:          volumeToMount.VolumeSpec,
			VolumeMountState:    VolumeMounted,
		}
		// Ground truth: this goroutine's id, then an instant just before
		// the call.
		var goid int64
		if og.gt != nil {
			goid = groundtruth.Goid()
		}
		at := og.monoNow()
		markVolMountedErr := actualStateOfWorld.MarkVolumeAsMounted(markOpts)
		if markVolMountedErr != nil {
			og.reportError(volumeToMount.PodName, markVolMountedErr.Error())
			return markVolMountedErr
		}
		if og.gt != nil {
			og.gt.Add(groundtruth.Record{
				Stage:     "volume_mounted",
				PodUID:    string(volumeToMount.Pod.UID),
				PodName:   volumeToMount.Pod.Name,
				Namespace: volumeToMount.Pod.Namespace,
				StartMono: at,
				EndMono:   at,
				Goid:      goid,
				Extra: []groundtruth.KV{
					{K: "volume", V: volumeToMount.OuterVolumeSpecName},
					{K: "unique_volume_name", V: string(volumeToMount.VolumeName)},
					{K: "returned_mono_ns", V: groundtruth.MonoNow()},
				},
			})
		}
		return nil
	}

	return volumetypes.GeneratedOperations{
		OperationName: "volume_mount",
		OperationFunc: mountVolumeFunc,
	}
}

// setUpVolume does what the emptyDir / projected volume plugins' SetUp does,
// minus mounting: create the volume directory and, for projected volumes,
// write its files.
func (og *operationGenerator) setUpVolume(volumeToMount VolumeToMount) error {
	if volumeToMount.Pod == nil || volumeToMount.VolumeSpec == nil || volumeToMount.VolumeSpec.Volume == nil {
		return fmt.Errorf("volume %q of pod %q has no spec", volumeToMount.VolumeName, volumeToMount.PodName)
	}
	_, pluginDir := util.PluginNameForVolume(volumeToMount.VolumeSpec.Volume)
	dir := filepath.Join(og.podsDir, string(volumeToMount.Pod.UID), "volumes", pluginDir, volumeToMount.OuterVolumeSpecName)
	if err := os.MkdirAll(dir, 0750); err != nil {
		return fmt.Errorf("MountVolume.SetUp failed for volume %q: %w", volumeToMount.OuterVolumeSpecName, err)
	}
	if volumeToMount.VolumeSpec.Volume.Projected != nil {
		files := map[string]string{
			"token":     "podtrace-fake-token." + string(volumeToMount.Pod.UID),
			"ca.crt":    "-----BEGIN CERTIFICATE-----\npodtrace\n-----END CERTIFICATE-----\n",
			"namespace": volumeToMount.Pod.Namespace,
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0644); err != nil {
				return fmt.Errorf("MountVolume.SetUp failed for volume %q: %w", volumeToMount.OuterVolumeSpecName, err)
			}
		}
	}
	return nil
}

func (og *operationGenerator) monoNow() int64 {
	if og.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}
