// Compiled-program cache: one PJRT executable per program (a model graph at one shape bucket),
// found by a key derived from the program's shape struct (ScoreShape::Key(), DraftShape::Key()).
// On disk when a directory is given, so a second start loads executables instead of compiling
// them. In memory while used: every loaded executable holds memory and memory maps, so the cache
// keeps at most `max_loaded` (0: no count bound) and, before a load would take the process within
// kMapsReserve maps of vm.max_map_count, unloads the least recently used programs no caller holds
// (a ProgramRef is shared: a program being run is never unloaded); an unloaded program comes back
// from the disk cache (or is compiled again without one) when it is next asked for.
//
// Programs can also be compiled in the background (Prefetch): the scheduler asks for a program it
// would like to use soon and keeps serving with the ones it has meanwhile, so a compile (seconds
// for a real model) does not stall every stream. Get() of a program being compiled in the
// background waits for that compile instead of starting a second one.
//
// Programs are compiled for one mesh (pjrt/mesh.h: the devices of one replica). Replicas of a
// data-parallel engine share a ProgramStore: one XLA compile at a time for all of them, and a
// program compiled by one replica is serialized there and loaded by the others onto their own
// devices (DeserializeAndLoad with their device assignment) instead of compiled again.
//
// A disk entry is `<hash>.pjrt`: a header saying what it is — the program key, a hash of the
// program text, the plugin path and platform version, the named signature — then the serialized
// executable. The header is checked on load: an entry made by another program, plugin or
// version, a truncated file, or one the plugin cannot deserialize is a logged miss, recompiled
// and overwritten. Writes go to a unique temporary file renamed into place, so processes sharing
// the directory never read half a file.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "models/program.h"
#include "pjrt/client.h"
#include "pjrt/mesh.h"

namespace dflash::engine {

// What the replicas of one engine share: the compile slots and the executables compiled so far
// (serialized, by disk header), kept only while `share` (more than one replica).
struct ProgramStore {
  explicit ProgramStore(int slots = 1) : compile_slots(slots < 1 ? 1 : slots) {}
  std::mutex mu;
  std::condition_variable cv;
  const int compile_slots;                  // XLA compiles running at once, any replica's
  int compiling = 0;
  std::set<std::string> compiling_headers;  // a program being compiled is not compiled twice
  bool share = false;
  std::unordered_map<std::string, std::string> serialized;
};

// 0 -> the host's hardware threads, at most 4 (EngineOptions::compile_threads).
int CompileSlots(int32_t option);

// A program ready to run: its named signature (models::Program without the text) and executable.
struct CompiledProgram {
  std::string key;
  std::vector<models::IoSpec> inputs, outputs;
  std::unique_ptr<pjrt::LoadedExecutable> exe;
  // The process's memory maps its load added (measured around it; approximate while other
  // programs load at the same time); 0 where the system does not say.
  int64_t maps = 0;
  int input_index(const std::string& name) const;
  int output_index(const std::string& name) const;
};
// Held while a program is used: the cache never unloads a program someone holds.
using ProgramRef = std::shared_ptr<CompiledProgram>;

// What the cache reports while it works: a compile starts / ends, a disk entry is loaded or
// rejected (with the reason), a program is unloaded (the bounds above).
struct ProgramEvent {
  enum Kind { kCompileStart, kCompileDone, kDiskLoad, kDiskReject, kUnload } kind;
  std::string key;
  double seconds = 0;
  std::string detail;
};

class ProgramCache {
 public:
  ProgramCache(pjrt::Mesh mesh, std::string disk_dir, std::shared_ptr<ProgramStore> store = nullptr);

  ProgramCache(const ProgramCache&) = delete;
  ProgramCache& operator=(const ProgramCache&) = delete;
  ~ProgramCache();  // waits for a background compile in progress

  // Returns the program registered under `key`. On first use `build` makes it (text + signature),
  // then it is loaded from disk or compiled; later calls cost one hash-map lookup.
  ProgramRef Get(const std::string& key, const std::function<models::Program()>& build);
  // The program if it is loaded, else nullptr (never compiles).
  ProgramRef Find(const std::string& key);
  // Queues `key` for compilation on the background thread unless it is ready or queued already.
  void Prefetch(const std::string& key, std::function<models::Program()> build);
  bool Has(const std::string& key) const;

  void set_observer(std::function<void(const ProgramEvent&)> f) { observer_ = std::move(f); }
  // Atomics: Engine::Stats() reads them from other threads, live.
  int64_t compiles() const { return compiles_.load(); }
  int64_t disk_hits() const { return disk_hits_.load(); }
  int64_t disk_rejects() const { return disk_rejects_.load(); }
  int64_t evictions() const { return evictions_.load(); }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return programs_.size();
  }
  // The memory maps of the loaded programs' loads, summed (stats().programs.programMaps).
  int64_t loaded_maps() const;
  int compile_slots() const { return store_->compile_slots; }
  // At most this many programs loaded (0: bounded by the memory maps only).
  void set_max_loaded(int64_t n) { max_loaded_ = n; }

 private:
  // Builds, loads or compiles one program (no lock held: compiles run in parallel with lookups).
  ProgramRef Make(const std::string& key, const std::function<models::Program()>& build);
  void BackgroundLoop();
  std::unique_ptr<pjrt::LoadedExecutable> LoadFromDisk(const std::string& path, const std::string& header, const CompiledProgram& p);
  // Loads bytes serialized by this or another replica onto this mesh; nullptr (reported) when the
  // plugin cannot or places it elsewhere.
  std::unique_ptr<pjrt::LoadedExecutable> Load(const std::string& bytes, const CompiledProgram& p, std::string& why);
  void SaveToDisk(const std::string& path, const std::string& header, const pjrt::LoadedExecutable& exe);
  void Emit(ProgramEvent::Kind kind, const std::string& key, double seconds = 0, const std::string& detail = "");
  // Makes room for one more program: unloads least recently used programs no caller holds while
  // the count bound is reached or (maps_needed) the memory maps are within the reserve. Returns
  // false when nothing could be unloaded.
  bool EvictOne();
  void Insert(const std::string& key, ProgramRef p);  // under mu_: stores and stamps it

  pjrt::Mesh mesh_;
  std::string disk_dir_;
  std::shared_ptr<ProgramStore> store_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Entry {
    ProgramRef program;
    uint64_t last_use = 0;
  };
  std::unordered_map<std::string, Entry> programs_;                               // loaded, by key
  uint64_t tick_ = 0;                                                             // last_use clock
  std::atomic<int64_t> max_loaded_{0};
  std::set<std::string> in_flight_;                                               // being made
  std::deque<std::pair<std::string, std::function<models::Program()>>> queue_;    // for the background thread
  std::thread background_;
  bool stop_ = false;
  std::function<void(const ProgramEvent&)> observer_;
  std::atomic<int64_t> compiles_{0}, disk_hits_{0}, disk_rejects_{0}, evictions_{0};
};

// The process's memory maps now (/proc/self/maps lines) and the kernel's limit on them
// (vm.max_map_count); 0 where the system does not say. XLA:CPU maps code and data for every loaded
// executable, and LLVM's JIT aborts the process when the maps run out, so the cache refuses to
// make a program within kMapsReserve maps of the limit (a JS error naming it) instead.
int64_t ProcessMapCount();
int64_t MaxMapCount();
// The count the cache last read (before and after making each program): what Stats() reports,
// since reading /proc/self/maps takes milliseconds and Stats() runs on the JS thread.
int64_t LastProcessMapCount();
inline constexpr int64_t kMapsReserve = 4096;

// FNV-1a, 64 bit: a stable key for the on-disk cache (not a security boundary).
uint64_t Fnv1a64(const std::string& text, uint64_t seed = 1469598103934665603ull);

// The signature as one line ("in k_cache f32[2,9,8,2,16]; ... out accept s32[1,9]"), stored in
// disk headers and compared on load.
std::string SignatureLine(const std::vector<models::IoSpec>& inputs, const std::vector<models::IoSpec>& outputs);

}  // namespace dflash::engine
