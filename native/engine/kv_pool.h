// The KV pool: the device caches of every sequence, in pages. Each page holds page_size token
// slots of the target's K/V for all its attention layers (with sliding-window rings, its full
// layers only) and, with a drafter, the drafter's context K/V for all its layers (context row =
// token position, so both share one block table per sequence). Beside the pages, per-sequence
// state slots: a hybrid target's recurrent state and the sliding layers' rings
// (models/sliding_ring.h). The pool is sized by memory (engine options kvCacheMemory), not by
// maxSequences x maxSeqLen.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/page_allocator.h"
#include "models/config.h"
#include "models/numerics.h"
#include "pjrt/client.h"
#include "pjrt/mesh.h"

namespace dflash::engine {

class KvPool {
 public:
  // total_pages includes the trash page 0. Over a tensor-parallel mesh every cache is split by
  // KV heads (models/parallel.h): a page's slots are spread over the devices, head by head.
  // state_slots > 0 (hybrid targets): the recurrent state arrays too, one slot per sequence
  // plus the trash slot of padding rows.
  // ring_pages > 0: the sliding-window layers' K/V live in per-slot rings (models/sliding_ring.h)
  // of the state_slots, not in the pages.
  KvPool(const pjrt::Mesh& mesh, const models::TargetConfig& target, const models::DrafterConfig* drafter,
         const models::Numerics& numerics, int32_t page_size, int32_t total_pages, bool drafter_replicated = false,
         int64_t state_slots = 0, int64_t snapshot_slots = 0, int64_t ring_pages = 0);

  // Bytes one page costs on each device of a mesh of `devices` (target + drafter context, K and V;
  // with rings, the target's full-attention layers only).
  static int64_t PageBytes(const models::TargetConfig& target, const models::DrafterConfig* drafter,
                           const models::Numerics& numerics, int32_t page_size, int64_t devices = 1, bool drafter_replicated = false,
                           int64_t ring_pages = 0);

  // Bytes one sequence's recurrent state costs (every linear layer's conv window and f32 state;
  // 0 for a target without recurrent layers).
  static int64_t StateBytes(const models::TargetConfig& target, const models::Numerics& numerics);
  // Bytes one state slot costs on each device of a mesh of `devices`: the recurrent state and the
  // sliding layers' K/V ring.
  static int64_t StateBytes(const models::TargetConfig& target, const models::Numerics& numerics, int32_t page_size, int64_t ring_pages,
                            int64_t devices);
  // Of which the ring (K and V of every sliding layer, ring_pages pages), on each device.
  static int64_t RingBytes(const models::TargetConfig& target, const models::Numerics& numerics, int32_t page_size, int64_t ring_pages,
                           int64_t devices);

  PageAllocator& pages() { return pages_; }
  const PageAllocator& pages() const { return pages_; }
  int32_t page_size() const { return page_size_; }
  int32_t total_pages() const { return pages_.total_pages(); }
  int64_t bytes() const { return bytes_; }  // on each device: pages and per-sequence states
  int64_t state_bytes() const { return state_bytes_; }  // of which the states (recurrent, rings)

  // The caches. Programs take them donated and return the updated ones, which replace these.
  std::unique_ptr<pjrt::Array> k, v;    // (L, N, S, kvh, hd), kvh split over the mesh
  std::unique_ptr<pjrt::Array> dk, dv;  // (Ld, N, S, kvh_d, hd_d), drafter only
  // Hybrid targets' recurrent group (models/gated_delta.h): conv (Ll, M, kernel - 1, C) and
  // ssm (Ll, M, Hv, dk, dv) f32, M = state slots; a sequence's slot is Sequence::slot.
  std::unique_ptr<pjrt::Array> conv, ssm;
  // Prefix caching of that group: snapshots of states at prefix points (Scheduler::SnapshotState),
  // the same layout with X snapshot slots.
  std::unique_ptr<pjrt::Array> conv_snap, ssm_snap;
  // Sliding-window layers' K/V rings (models/sliding_ring.h): (Ls, 1 + M * ring_pages, S, kvh, hd),
  // and their snapshots (Ls, 1 + X * ring_pages, ...).
  std::unique_ptr<pjrt::Array> swa_k, swa_v, swa_k_snap, swa_v_snap;

  // The array a program input or output of this name is (k_cache, conv_state, swa_k_snap, ...):
  // nullptr for another name or an array this pool does not have.
  std::unique_ptr<pjrt::Array>* Find(const std::string& name);
  // The per-sequence state arrays this pool has, by program name: the running ones (conv_state,
  // ssm_state, swa_k_cache, swa_v_cache) and, with `snapshots`, their snapshots too.
  std::vector<std::pair<std::string, std::unique_ptr<pjrt::Array>*>> StateArrays(bool snapshots);

 private:
  PageAllocator pages_;
  int32_t page_size_;
  int64_t bytes_ = 0, state_bytes_ = 0;
};

// A zero-filled array made on the mesh's devices by a tiny compiled program (each device makes
// its own part of a split array), so no host buffer of the cache's size ever exists (it would
// double the process's peak memory on the CPU plugin).
std::unique_ptr<pjrt::Array> ZerosOnDevice(const pjrt::Mesh& mesh, pjrt::DType dtype, const std::vector<int64_t>& dims,
                                           hlo::Sharding sharding = {});

}  // namespace dflash::engine
