// What dflash does around loading libtpu, the TPU PJRT plugin (pip package `libtpu`), so that it
// behaves on machines that are not Cloud TPU VMs and fails with actionable errors on ones that are.
#pragma once
#include <string>
#include <vector>

namespace dflash::pjrt {

// True for a plugin file that is libtpu (its file name starts with "libtpu").
bool IsLibtpu(const std::string& path);

// Off Google Cloud, libtpu's start-up asks the GCE metadata server for the TPU topology
// (accelerator type, worker id, host bounds, ...) and retries each query ~30 times: more than
// five minutes of hanging before it can fail. Unless the host is a GCE VM (DMI product name /
// BIOS vendor) with TPU device nodes, and unless TPU_SKIP_MDS_QUERY is already set, this sets
// TPU_SKIP_MDS_QUERY=1 so libtpu uses its local defaults and fails at once when there is no TPU.
// Returns the assignments it made ("TPU_SKIP_MDS_QUERY=1"): empty when the user's environment
// already decides or on a TPU VM.
std::vector<std::string> PrepareLibtpuEnvironment();

// True when DMI says this machine is a Google Compute Engine VM.
bool IsGoogleComputeEngine();

// True when TPU chips are visible as device nodes (/dev/accel0, /dev/vfio/<N>).
bool HasTpuDeviceNodes();

// libtpu lets one process use the TPU chips at a time and marks it with a POSIX record lock on
// /tmp/libtpu_lockfile. Describes who holds that lock ("pid 1234 (python train.py)"), or "" when
// nobody does or it cannot be told.
std::string LibtpuLockHolder(const std::string& lockfile = "/tmp/libtpu_lockfile");

// libtpu's own message for a held lock says "Internal error ... Run sudo rm /tmp/libtpu_lockfile",
// which is wrong advice while the other process runs. Rewrites such a message into one naming the
// holder and what to do; returns `message` unchanged when it is not about the lockfile.
std::string ExplainLibtpuLockError(const std::string& message, const std::string& plugin_path);

}  // namespace dflash::pjrt
