// The KV pool: see kv_pool.h.
#include "engine/kv_pool.h"

#include <stdexcept>
#include <vector>

#include "hlo/builder.h"
#include "models/paged.h"
#include "models/program.h"

namespace dflash::engine {

std::unique_ptr<pjrt::Buffer> ZerosOnDevice(pjrt::Client& client, pjrt::DType dtype, const std::vector<int64_t>& dims) {
  hlo::Builder b;
  const std::string mlir = b.Finish({b.Splat(0, dims, models::ToHlo(dtype))});
  auto exe = client.Compile(mlir);
  auto out = exe->Execute({});
  return std::move(out.at(0));
}

int64_t KvPool::PageBytes(const models::TargetConfig& t, const models::DrafterConfig* d, const models::Numerics& n,
                          int32_t page_size) {
  const int64_t per_token = t.num_layers * t.num_kv_heads * t.head_dim + (d ? d->num_layers * d->num_kv_heads * d->head_dim : 0);
  return 2 * per_token * page_size * pjrt::ByteSize(n.kv_dtype);  // K and V
}

KvPool::KvPool(pjrt::Client& client, const models::TargetConfig& t, const models::DrafterConfig* d,
               const models::Numerics& n, int32_t page_size, int32_t total_pages)
    : pages_(total_pages), page_size_(page_size) {
  k = ZerosOnDevice(client, n.kv_dtype, models::KeyCacheDims(t.num_layers, total_pages, page_size, t.num_kv_heads, t.head_dim));
  v = ZerosOnDevice(client, n.kv_dtype, models::ValueCacheDims(t.num_layers, total_pages, page_size, t.num_kv_heads, t.head_dim));
  if (d) {
    dk = ZerosOnDevice(client, n.kv_dtype, models::KeyCacheDims(d->num_layers, total_pages, page_size, d->num_kv_heads, d->head_dim));
    dv = ZerosOnDevice(client, n.kv_dtype, models::ValueCacheDims(d->num_layers, total_pages, page_size, d->num_kv_heads, d->head_dim));
  }
  bytes_ = PageBytes(t, d, n, page_size) * total_pages;
}

}  // namespace dflash::engine
