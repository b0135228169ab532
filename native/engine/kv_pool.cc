// The KV pool: see kv_pool.h.
#include "engine/kv_pool.h"

#include <iterator>
#include <stdexcept>
#include <vector>

#include "hlo/builder.h"
#include "models/gated_delta.h"
#include "models/paged.h"
#include "models/parallel.h"
#include "models/program.h"
#include "models/sliding_ring.h"

namespace dflash::engine {

std::unique_ptr<pjrt::Array> ZerosOnDevice(const pjrt::Mesh& mesh, pjrt::DType dtype, const std::vector<int64_t>& dims,
                                           hlo::Sharding sharding) {
  const int64_t n = static_cast<int64_t>(mesh.size());
  if (n == 1) sharding = {};
  hlo::Builder b(n);
  const std::string mlir = b.Finish({b.Splat(0, dims, models::ToHlo(dtype))}, {sharding});
  auto exe = mesh.Compile(mlir);
  auto out = mesh.Run(*exe, {}, {sharding.dim});
  return std::move(out.at(0));
}

int64_t KvPool::PageBytes(const models::TargetConfig& t, const models::DrafterConfig* d, const models::Numerics& n,
                          int32_t page_size, int64_t devices, bool drafter_replicated, int64_t ring_pages) {
  // KV heads per device: the caches hold TensorParallel::kv_heads heads, split over the devices.
  // Only attention layers have KV (a hybrid target's recurrent layers keep a state per sequence),
  // and with rings only the full-attention ones.
  const int64_t layers = t.num_attention_layers() - (ring_pages > 0 ? t.num_sliding_layers() : 0);
  int64_t per_token = layers * (models::TargetParallel(t, devices).kv_heads / devices) * t.head_dim;
  if (d) {
    const models::TensorParallel dtp = models::DrafterParallel(*d, t, devices, drafter_replicated);
    per_token += d->num_layers * (dtp.replicated ? dtp.kv_heads : dtp.kv_heads / devices) * d->head_dim;
  }
  return 2 * per_token * page_size * pjrt::ByteSize(n.kv_dtype);  // K and V
}

int64_t KvPool::StateBytes(const models::TargetConfig& t, const models::Numerics& n) {
  const int64_t ll = t.num_linear_layers();
  const auto& c = t.linear;
  return ll * ((c.conv_kernel - 1) * c.conv_dim() * pjrt::ByteSize(n.dtype) + c.value_heads * c.key_dim * c.value_dim * 4);
}

int64_t KvPool::RingBytes(const models::TargetConfig& t, const models::Numerics& n, int32_t page_size, int64_t ring_pages, int64_t devices) {
  if (ring_pages == 0) return 0;
  const int64_t heads = models::TargetParallel(t, devices).kv_heads / devices;
  return 2 * t.num_sliding_layers() * ring_pages * page_size * heads * t.head_dim * pjrt::ByteSize(n.kv_dtype);
}

int64_t KvPool::StateBytes(const models::TargetConfig& t, const models::Numerics& n, int32_t page_size, int64_t ring_pages, int64_t devices) {
  return StateBytes(t, n) / devices + RingBytes(t, n, page_size, ring_pages, devices);
}

KvPool::KvPool(const pjrt::Mesh& mesh, const models::TargetConfig& t, const models::DrafterConfig* d,
               const models::Numerics& n, int32_t page_size, int32_t total_pages, bool drafter_replicated, int64_t state_slots,
               int64_t snapshot_slots, int64_t ring_pages)
    : pages_(total_pages, page_size), page_size_(page_size) {
  const int64_t devices = static_cast<int64_t>(mesh.size());
  const models::TensorParallel tp = models::TargetParallel(t, devices);
  const int64_t ls = ring_pages > 0 ? t.num_sliding_layers() : 0, la = t.num_attention_layers() - ls;
  k = ZerosOnDevice(mesh, n.kv_dtype, models::KeyCacheDims(la, total_pages, page_size, tp.kv_heads, t.head_dim), tp.Cache());
  v = ZerosOnDevice(mesh, n.kv_dtype, models::ValueCacheDims(la, total_pages, page_size, tp.kv_heads, t.head_dim), tp.Cache());
  if (ls > 0 && state_slots > 0) {
    swa_k = ZerosOnDevice(mesh, n.kv_dtype, models::RingCacheDims(ls, state_slots, ring_pages, page_size, tp.kv_heads, t.head_dim), tp.Cache());
    swa_v = ZerosOnDevice(mesh, n.kv_dtype, models::RingCacheDims(ls, state_slots, ring_pages, page_size, tp.kv_heads, t.head_dim), tp.Cache());
    if (snapshot_slots > 0) {
      swa_k_snap = ZerosOnDevice(mesh, n.kv_dtype, models::RingCacheDims(ls, snapshot_slots, ring_pages, page_size, tp.kv_heads, t.head_dim), tp.Cache());
      swa_v_snap = ZerosOnDevice(mesh, n.kv_dtype, models::RingCacheDims(ls, snapshot_slots, ring_pages, page_size, tp.kv_heads, t.head_dim), tp.Cache());
    }
  }
  if (d) {
    const models::TensorParallel dtp = models::DrafterParallel(*d, t, devices, drafter_replicated);
    dk = ZerosOnDevice(mesh, n.kv_dtype, models::KeyCacheDims(d->num_layers, total_pages, page_size, dtp.kv_heads, d->head_dim), dtp.Cache());
    dv = ZerosOnDevice(mesh, n.kv_dtype, models::ValueCacheDims(d->num_layers, total_pages, page_size, dtp.kv_heads, d->head_dim), dtp.Cache());
  }
  bytes_ = PageBytes(t, d, n, page_size, devices, drafter_replicated, ring_pages) * total_pages;
  const int64_t ring_bytes = RingBytes(t, n, page_size, ring_pages, devices) * (state_slots + snapshot_slots);
  state_bytes_ = ring_bytes;
  bytes_ += ring_bytes;
  if (t.hybrid() && state_slots > 0) {
    conv = ZerosOnDevice(mesh, n.dtype, models::ConvStateDims(t.linear, t.num_linear_layers(), state_slots), models::ConvStateSharding(tp));
    ssm = ZerosOnDevice(mesh, pjrt::DType::kF32, models::SsmStateDims(t.linear, t.num_linear_layers(), state_slots), models::SsmStateSharding(tp));
    if (snapshot_slots > 0) {
      conv_snap = ZerosOnDevice(mesh, n.dtype, models::ConvStateDims(t.linear, t.num_linear_layers(), snapshot_slots), models::ConvStateSharding(tp));
      ssm_snap = ZerosOnDevice(mesh, pjrt::DType::kF32, models::SsmStateDims(t.linear, t.num_linear_layers(), snapshot_slots), models::SsmStateSharding(tp));
    }
    const int64_t recurrent = StateBytes(t, n) * (state_slots + snapshot_slots) / devices;  // split by heads over the mesh
    state_bytes_ += recurrent;
    bytes_ += recurrent;
  }
}

namespace {
// Program names of the pool's arrays; the state arrays are the entries from conv_state on.
const char* const kNames[] = {"k_cache", "v_cache", "dk_cache", "dv_cache", "conv_state", "ssm_state", "swa_k_cache", "swa_v_cache",
                              "conv_snap", "ssm_snap", "swa_k_snap", "swa_v_snap"};
}  // namespace

std::unique_ptr<pjrt::Array>* KvPool::Find(const std::string& name) {
  std::unique_ptr<pjrt::Array>* arrays[] = {&k, &v, &dk, &dv, &conv, &ssm, &swa_k, &swa_v, &conv_snap, &ssm_snap, &swa_k_snap, &swa_v_snap};
  for (size_t i = 0; i < std::size(kNames); ++i)
    if (name == kNames[i]) return *arrays[i] ? arrays[i] : nullptr;
  return nullptr;
}

std::vector<std::pair<std::string, std::unique_ptr<pjrt::Array>*>> KvPool::StateArrays(bool snapshots) {
  std::vector<std::pair<std::string, std::unique_ptr<pjrt::Array>*>> out;
  for (size_t i = 4; i < (snapshots ? std::size(kNames) : 8); ++i)
    if (auto* a = Find(kNames[i])) out.emplace_back(kNames[i], a);
  return out;
}

}  // namespace dflash::engine
