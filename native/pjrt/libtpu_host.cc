// libtpu environment and lock diagnostics: see libtpu_host.h.
#include "pjrt/libtpu_host.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace dflash::pjrt {
namespace {

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// /proc/<pid>/cmdline with the NULs as spaces, cut to a readable length.
std::string CommandLine(long pid) {
  std::string cmd = ReadSmallFile("/proc/" + std::to_string(pid) + "/cmdline");
  while (!cmd.empty() && cmd.back() == '\0') cmd.pop_back();
  for (char& c : cmd)
    if (c == '\0') c = ' ';
  if (cmd.size() > 120) cmd = cmd.substr(0, 117) + "...";
  return cmd;
}

}  // namespace

bool IsLibtpu(const std::string& path) {
  return std::filesystem::path(path).filename().string().rfind("libtpu", 0) == 0;
}

bool IsGoogleComputeEngine() {
  // The same DMI fields Google's own client libraries read to detect GCE without a network call.
  const std::string product = ReadSmallFile("/sys/class/dmi/id/product_name");
  const std::string vendor = ReadSmallFile("/sys/class/dmi/id/bios_vendor");
  return product.find("Google Compute Engine") != std::string::npos || vendor.rfind("Google", 0) == 0;
}

bool HasTpuDeviceNodes() {
  // TPU VMs expose the chips as /dev/accel<N> (v2-v4) or VFIO groups /dev/vfio/<N> (v5e and later).
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists("/dev/accel0", ec)) return true;
  for (auto& e : fs::directory_iterator("/dev/vfio", ec))
    if (std::isdigit(static_cast<unsigned char>(e.path().filename().string()[0]))) return true;
  return false;
}

std::vector<std::string> PrepareLibtpuEnvironment() {
  std::vector<std::string> set;
  // The metadata only helps a GCE VM that has TPU chips; anywhere else libtpu fails without
  // them anyway, so it may as well fail at once.
  if (std::getenv("TPU_SKIP_MDS_QUERY") == nullptr && !(IsGoogleComputeEngine() && HasTpuDeviceNodes())) {
    setenv("TPU_SKIP_MDS_QUERY", "1", /*overwrite=*/0);
    set.push_back("TPU_SKIP_MDS_QUERY=1");
  }
  return set;
}

std::string LibtpuLockHolder(const std::string& lockfile) {
  const int fd = open(lockfile.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  const bool ok = fcntl(fd, F_GETLK, &probe) == 0;
  close(fd);
  if (!ok || probe.l_type == F_UNLCK || probe.l_pid <= 0) return "";
  const std::string cmd = CommandLine(probe.l_pid);
  return "pid " + std::to_string(probe.l_pid) + (cmd.empty() ? "" : " (" + cmd + ")");
}

std::string ExplainLibtpuLockError(const std::string& message, const std::string& plugin_path) {
  if (!IsLibtpu(plugin_path) || message.find("libtpu_lockfile") == std::string::npos) return message;
  const std::string holder = LibtpuLockHolder();
  if (!holder.empty())
    return "the TPU is in use by another process: " + holder +
           " holds /tmp/libtpu_lockfile. libtpu lets one process use the TPU chips at a time: stop that "
           "process (do not delete the lockfile while it runs). libtpu said: " + message;
  return "libtpu could not take /tmp/libtpu_lockfile, so another process is probably using the TPU "
         "(find it with `lsof /tmp/libtpu_lockfile` or `lsof /dev/accel* /dev/vfio/*`). Only when no "
         "process uses the TPU may the stale file be removed. libtpu said: " + message;
}

}  // namespace dflash::pjrt
