// One op that updates many exponential-moving-average shadows at once.
//
// For every pair (shadow[i], value[i]) of dtype T_i in {half, bfloat16, float,
// double}, and the float32 scalar one_minus_decay:
//
//     k         = cast<T_i>(one_minus_decay)       // round to nearest even
//     d         = round<T_i>(shadow - value)
//     m         = round<T_i>(d * k)
//     shadow    = round<T_i>(shadow - m)
//
// which is, bit for bit, what TF1's ExponentialMovingAverage computes with its
// three kernels Sub, Mul and AssignSubVariableOp (or AssignSub for ref
// variables): half and bfloat16 are computed in float32 and rounded to the
// 16-bit type after every operation, as Eigen does, and nothing is fused (the
// library is compiled with -ffp-contract=off: no fused multiply-add). The
// difference is the memory traffic: one pass reads shadow and value and writes
// shadow, 3 accesses per element instead of 8, and one kernel launch serves all
// variables instead of five or six ops per variable.
//
// Denormals: the work runs on TensorFlow's own intra-op threads, which flush
// denormals to zero like the threads that run the stock kernels, so float32,
// float64 and bfloat16 denormals are treated exactly as the stock kernels treat
// them.
//
// Variables are locked (in address order, as TF's training ops do) for the
// whole update, or for each group of pairs when they are named (TF1 locks one
// variable per op), and a shadow whose buffer is shared with a pending read, or
// that is in copy-on-read mode, gets a fresh buffer first, as
// PrepareToUpdateVariable does in tensorflow/core/kernels/training_op_helpers.h;
// here the fresh buffer is written directly by the update instead of being
// copied and then updated.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#include <immintrin.h>
#define TF1_EMA_X86 1
// One copy of the loop per instruction set, picked when the library loads; the
// bits do not depend on the pick (IEEE operations, no contraction).
#define TF1_EMA_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TF1_EMA_X86 0
#define TF1_EMA_CLONES
#endif

namespace tf1_ema {
namespace {

using tensorflow::DataType;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::Var;

// ---------------------------------------------------------------------------
// The elementwise update, one loop per dtype. `out` may equal `s`.
// ---------------------------------------------------------------------------

TF1_EMA_CLONES
void UpdateF32(const float* s, const float* v, float* out, float k, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = s[i] - v[i];
    const float m = d * k;
    out[i] = s[i] - m;
  }
}

TF1_EMA_CLONES
void UpdateF64(const double* s, const double* v, double* out, double k, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double d = s[i] - v[i];
    const double m = d * k;
    out[i] = s[i] - m;
  }
}

// bfloat16 <-> float32, as Eigen's vectorized conversions: widening is exact,
// narrowing rounds to nearest even and turns every NaN into 0x7fc0 (the stock
// kernels' result, sign dropped, measured on TF 2.21).
inline float Bf16ToF32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

TF1_EMA_CLONES
void UpdateBf16(const uint16_t* s, const uint16_t* v, uint16_t* out, float k, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float si = Bf16ToF32(s[i]);
    const float d = Bf16ToF32(F32ToBf16(si - Bf16ToF32(v[i])));
    const float m = Bf16ToF32(F32ToBf16(d * k));
    out[i] = F32ToBf16(si - m);
  }
}

// float16: portable loop on Eigen's conversions (round to nearest even).
void UpdateF16Portable(const Eigen::half* s, const Eigen::half* v, Eigen::half* out, float k,
                       int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float si = static_cast<float>(s[i]);
    const float d = static_cast<float>(Eigen::half(si - static_cast<float>(v[i])));
    const float m = static_cast<float>(Eigen::half(d * k));
    out[i] = Eigen::half(si - m);
  }
}

#if TF1_EMA_X86
// float16 with the F16C conversion instructions, 8 lanes at a time; the
// immediate 0 selects round to nearest even, the same rounding as above.
__attribute__((target("avx2,f16c"))) void UpdateF16C(const Eigen::half* s, const Eigen::half* v,
                                                     Eigen::half* out, float k, int64_t n) {
  const __m256 kk = _mm256_set1_ps(k);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 si = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    const __m256 vi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)));
    const __m256 d = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_sub_ps(si, vi), 0));
    const __m256 m = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(d, kk), 0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_sub_ps(si, m), 0));
  }
  if (i < n) UpdateF16Portable(s + i, v + i, out + i, k, n - i);
}

// The same with AVX-512, 16 lanes: float16 is compute-bound with 8 (bfloat16,
// converted with integer operations, vectorizes well enough by itself).
__attribute__((target("avx512f"))) void UpdateF16Avx512(const Eigen::half* s, const Eigen::half* v,
                                                        Eigen::half* out, float k, int64_t n) {
  const __m512 kk = _mm512_set1_ps(k);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 si = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    const __m512 vi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i)));
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_sub_ps(si, vi), 0));
    const __m512 m = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_mul_ps(d, kk), 0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtps_ph(_mm512_sub_ps(si, m), 0));
  }
  if (i < n) UpdateF16C(s + i, v + i, out + i, k, n - i);
}

// __builtin_cpu_init: these run as static initializers, possibly before libgcc's.
const bool kHaveF16C = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c"));
const bool kHaveAvx512 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
#endif

void UpdateF16(const Eigen::half* s, const Eigen::half* v, Eigen::half* out, float k, int64_t n) {
#if TF1_EMA_X86
  if (kHaveAvx512) return UpdateF16Avx512(s, v, out, k, n);
  if (kHaveF16C) return UpdateF16C(s, v, out, k, n);
#endif
  UpdateF16Portable(s, v, out, k, n);
}

// ---------------------------------------------------------------------------
// Many tensors, one pass: segments laid end to end and sharded by element.
// ---------------------------------------------------------------------------

struct Segment {
  DataType dtype;
  const void* shadow;
  const void* value;
  void* out;
  int64_t begin;  // offset of this segment's first element in the whole range
  int64_t size;
};

// TF's Cast kernel rounds float32 to nearest even for every target type.
void UpdateRange(const Segment& g, float one_minus_decay, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo;
  switch (g.dtype) {
    case tensorflow::DT_FLOAT:
      UpdateF32(static_cast<const float*>(g.shadow) + lo, static_cast<const float*>(g.value) + lo,
                static_cast<float*>(g.out) + lo, one_minus_decay, n);
      break;
    case tensorflow::DT_DOUBLE:
      UpdateF64(static_cast<const double*>(g.shadow) + lo, static_cast<const double*>(g.value) + lo,
                static_cast<double*>(g.out) + lo, static_cast<double>(one_minus_decay), n);
      break;
    case tensorflow::DT_HALF:
      UpdateF16(static_cast<const Eigen::half*>(g.shadow) + lo,
                static_cast<const Eigen::half*>(g.value) + lo, static_cast<Eigen::half*>(g.out) + lo,
                static_cast<float>(Eigen::half(one_minus_decay)), n);
      break;
    case tensorflow::DT_BFLOAT16:
      UpdateBf16(static_cast<const uint16_t*>(g.shadow) + lo,
                 static_cast<const uint16_t*>(g.value) + lo, static_cast<uint16_t*>(g.out) + lo,
                 Bf16ToF32(F32ToBf16(one_minus_decay)), n);
      break;
    default:
      break;  // unreachable: CheckPair rejects every other dtype before any work starts
  }
}

// Per-element cost handed to Shard, in its units (roughly cycles).
constexpr int64_t kCostPerElement = 8;

void RunSegments(OpKernelContext* ctx, const std::vector<Segment>& segments, float one_minus_decay) {
  if (segments.empty()) return;
  const int64_t total = segments.back().begin + segments.back().size;
  if (total == 0) return;
  auto work = [&segments, one_minus_decay](int64_t start, int64_t limit) {
    // First segment that ends after `start`.
    auto it = std::upper_bound(segments.begin(), segments.end(), start,
                               [](int64_t x, const Segment& g) { return x < g.begin + g.size; });
    for (; it != segments.end() && it->begin < limit; ++it) {
      const int64_t lo = std::max<int64_t>(start, it->begin) - it->begin;
      const int64_t hi = std::min<int64_t>(limit, it->begin + it->size) - it->begin;
      if (lo < hi) UpdateRange(*it, one_minus_decay, lo, hi);
    }
  };
  const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(threads->num_threads, threads->workers, total, kCostPerElement, work);
}

// The dtypes UpdateRange computes. A resource variable's dtype is not in the
// op's type constraints (only tensors are), so every pair is checked here and
// another dtype is an error, never a silently skipped update.
bool Supported(DataType dtype) {
  return dtype == tensorflow::DT_FLOAT || dtype == tensorflow::DT_DOUBLE || dtype == tensorflow::DT_HALF ||
         dtype == tensorflow::DT_BFLOAT16;
}

absl::Status CheckPair(int i, const Tensor& shadow, const Tensor& value) {
  if (!Supported(shadow.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("Tf1EmaUpdate: shadow ", i, " has dtype ",
                                                   tensorflow::DataTypeString(shadow.dtype()),
                                                   "; only half, bfloat16, float and double are supported"));
  }
  if (shadow.dtype() != value.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Tf1EmaUpdate: shadow ", i, " has dtype ", tensorflow::DataTypeString(shadow.dtype()),
        " but its value has dtype ", tensorflow::DataTypeString(value.dtype())));
  }
  if (!shadow.shape().IsSameSize(value.shape())) {
    return absl::InvalidArgumentError(absl::StrCat("Tf1EmaUpdate: shadow ", i, " has shape ",
                                                   shadow.shape().DebugString(), " but its value has shape ",
                                                   value.shape().DebugString()));
  }
  return absl::OkStatus();
}

absl::Status OneMinusDecay(OpKernelContext* ctx, int input, float* one_minus_decay) {
  const Tensor& t = ctx->input(input);
  if (!tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
    return absl::InvalidArgumentError(
        absl::StrCat("Tf1EmaUpdate: one_minus_decay must be a scalar, got shape ", t.shape().DebugString()));
  }
  *one_minus_decay = t.scalar<float>()();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Resource variables.
// ---------------------------------------------------------------------------

// An error, ReadVariableOp's, for the first handle whose variable was not found.
absl::Status CheckFound(OpKernelContext* ctx, const std::vector<const tensorflow::ResourceHandle*>& handles,
                        const std::vector<tensorflow::core::RefCountPtr<Var>>& vars) {
  for (size_t i = 0; i < handles.size(); ++i) {
    if (!vars[i]) {
      // The message and error class of ReadVariableOp, which TF1 code may catch.
      tensorflow::core::RefCountPtr<Var> missing;
      const absl::Status status = tensorflow::LookupResource(ctx, *handles[i], &missing);
      return absl::FailedPreconditionError(absl::StrCat(
          "Could not find variable ", handles[i]->name(),
          ". This could mean that the variable has been deleted. In TF1, it can also mean the variable is "
          "uninitialized. Debug info: container=", handles[i]->container(),
          ", status error message=", status.message()));
    }
  }
  return absl::OkStatus();
}

// Looks up `handles` in one batch under one lock of the resource manager,
// which halves the cost per variable against one LookupResource each (it
// matters with thousands); ref-counting (eager) handles one by one.
absl::Status LookupVariables(OpKernelContext* ctx, const std::vector<const tensorflow::ResourceHandle*>& handles,
                             std::vector<tensorflow::core::RefCountPtr<Var>>* vars) {
  bool batch = true;
  for (const auto* h : handles) batch = batch && !h->IsRefCounting();
  vars->resize(handles.size());
  if (batch) {
    TF_RETURN_IF_ERROR(tensorflow::LookupResources(ctx, handles, vars));
  } else {
    for (size_t i = 0; i < handles.size(); ++i) {
      TF_RETURN_IF_ERROR(tensorflow::LookupResource(ctx, *handles[i], &(*vars)[i]));
    }
  }
  return CheckFound(ctx, handles, *vars);
}

// The update of N resource-variable shadows. Pair i is shadow i and its
// value: for i < M the variable of value handle i, read here under its lock
// (which saves one ReadVariableOp each), else the tensor input
// `first_tensor_ + i - M`. Subclasses say where the handles come from and
// may update the pairs a group at a time (UpdatePairs).
class UpdateResourceBase : public OpKernel {
 public:
  explicit UpdateResourceBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("M", &m_));
    std::vector<DataType> t;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("T", &t));
    OP_REQUIRES(ctx, m_ <= n_ && m_ + static_cast<int>(t.size()) == n_,
                absl::InvalidArgumentError(absl::StrCat(type_string(), ": ", n_, " shadows but ", m_,
                                                        " variables and ", t.size(), " tensors")));
  }

  void Compute(OpKernelContext* ctx) override {
    float one_minus_decay;
    OP_REQUIRES_OK(ctx, OneMinusDecay(ctx, ctx->num_inputs() - 1, &one_minus_decay));
    OP_REQUIRES_OK(ctx, UpdatePairs(ctx, 0, n_, one_minus_decay));
  }

 protected:
  // Updates pairs [lo, hi): looks their variables up, locks them, checks
  // every pair, then computes. Nothing is written before all of them passed.
  absl::Status UpdatePairs(OpKernelContext* ctx, int lo, int hi, float one_minus_decay) {
    const int shadows = hi - lo;
    std::vector<const tensorflow::ResourceHandle*> handles;
    Handles(ctx, lo, hi, &handles);
    std::vector<tensorflow::core::RefCountPtr<Var>> vars;
    std::vector<std::pair<Var*, bool>> order;  // (variable, exclusive), in lock order
    TF_RETURN_IF_ERROR(Variables(ctx, lo, hi, handles, &vars, &order));
    std::vector<tensorflow::mutex_lock> locks;
    std::vector<tensorflow::tf_shared_lock> shared_locks;
    std::vector<const Var*> also_read;  // shadows that are also the value of a pair here
    locks.reserve(order.size());
    shared_locks.reserve(order.size());
    for (size_t j = 0; j < order.size(); ++j) {
      Var* var = order[j].first;
      if (j > 0 && order[j - 1].first == var) {
        if (order[j].second) {
          return absl::InvalidArgumentError(absl::StrCat(type_string(), ": the same shadow variable appears twice"));
        }
        also_read.push_back(var);
        continue;  // already locked, exclusively if it is also a shadow
      }
      if (order[j].second) {
        locks.emplace_back(*var->mu());
      } else {
        shared_locks.emplace_back(*var->mu());
      }
    }

    std::vector<Segment> segments(shadows);
    std::vector<std::pair<Var*, Tensor>> fresh;  // shadows that get a new buffer
    int64_t begin = 0;
    for (int j = 0; j < shadows; ++j) {
      const int i = lo + j;
      Var* var = vars[j].get();
      Tensor* shadow = var->tensor();
      if (!var->is_initialized || !shadow->IsInitialized()) {
        return absl::FailedPreconditionError(absl::StrCat("Error while reading resource variable ",
                                                          handles[j]->name(),
                                                          ". This could mean that the variable was uninitialized."));
      }
      const Tensor* value;
      if (i < m_) {
        Var* value_var = vars[shadows + j].get();
        value = value_var->tensor();
        if (!value_var->is_initialized || !value->IsInitialized()) {
          return absl::FailedPreconditionError(absl::StrCat("Error while reading resource variable ",
                                                            handles[shadows + j]->name(),
                                                            ". This could mean that the variable was uninitialized."));
        }
      } else {
        value = &ctx->input(first_tensor_ + (i - m_));
      }
      TF_RETURN_IF_ERROR(CheckPair(i, *shadow, *value));
      Segment& g = segments[j];
      g.dtype = shadow->dtype();
      g.shadow = shadow->data();
      g.value = value->data();
      g.out = shadow->data();
      g.begin = begin;
      g.size = shadow->NumElements();
      begin += g.size;
      // As PrepareToUpdateVariable: never write a buffer someone else holds
      // (a pending read, or the value itself); the update then writes a new
      // buffer instead of copying first and updating in place.
      // A shadow that another pair reads as its value also gets a new buffer:
      // TF1 reads the old shadow there (the Python side sends no such pair).
      const bool read_here =
          !also_read.empty() && std::find(also_read.begin(), also_read.end(), var) != also_read.end();
      if (read_here || var->copy_on_read_mode.load() || !shadow->RefCountIsOne()) {
        tensorflow::AllocatorAttributes attr;
        attr.set_gpu_compatible(true);
        attr.set_nic_compatible(true);
        Tensor tmp;
        TF_RETURN_IF_ERROR(ctx->allocate_temp(shadow->dtype(), shadow->shape(), &tmp, attr));
        g.out = tmp.data();
        fresh.emplace_back(var, std::move(tmp));
      }
    }
    Computing(lo, segments);
    RunSegments(ctx, segments, one_minus_decay);
    for (auto& [var, tmp] : fresh) *var->tensor() = std::move(tmp);
    return absl::OkStatus();
  }

  // Told the segments of pairs [lo, ...) just before they are computed.
  virtual void Computing(int lo, const std::vector<Segment>& segments) {}

  // The handles of pairs [lo, hi): their shadows', then the value variables'
  // of those below M.
  virtual void Handles(OpKernelContext* ctx, int lo, int hi,
                       std::vector<const tensorflow::ResourceHandle*>* handles) = 0;

  // The variables of `handles` (pairs [lo, hi)) and the order to lock them in.
  virtual absl::Status Variables(OpKernelContext* ctx, int lo, int hi,
                                 const std::vector<const tensorflow::ResourceHandle*>& handles,
                                 std::vector<tensorflow::core::RefCountPtr<Var>>* vars,
                                 std::vector<std::pair<Var*, bool>>* order) {
    TF_RETURN_IF_ERROR(LookupVariables(ctx, handles, vars));
    LockOrder(*vars, hi - lo, order);
    return absl::OkStatus();
  }

  // Each variable is locked once, in address order as TF's training ops do
  // so that ops sharing variables cannot deadlock: exclusively if it is one
  // of the first `shadows` (as AssignSubVariableOp), shared if it is only
  // read (as ReadVariableOp). A shadow listed twice would be updated twice
  // in parallel, so it is refused (the Python side never sends one).
  static void LockOrder(const std::vector<tensorflow::core::RefCountPtr<Var>>& vars, int shadows,
                        std::vector<std::pair<Var*, bool>>* order) {
    order->clear();
    order->reserve(vars.size());
    for (size_t i = 0; i < vars.size(); ++i) order->emplace_back(vars[i].get(), static_cast<int>(i) < shadows);
    std::sort(order->begin(), order->end(), [](const std::pair<Var*, bool>& a, const std::pair<Var*, bool>& b) {
      return a.first->mu() != b.first->mu() ? a.first->mu() < b.first->mu() : a.second > b.second;
    });
  }

  int n_ = 0;
  int m_ = 0;
  int first_tensor_ = 0;  // input index of the first value tensor
};

// Tf1EmaUpdate: the handles are the op's first N + M inputs.
class Tf1EmaUpdateOp : public UpdateResourceBase {
 public:
  explicit Tf1EmaUpdateOp(OpKernelConstruction* ctx) : UpdateResourceBase(ctx) { first_tensor_ = n_ + m_; }

 protected:
  void Handles(OpKernelContext* ctx, int lo, int hi,
               std::vector<const tensorflow::ResourceHandle*>* handles) override {
    handles->clear();
    for (int i = lo; i < hi; ++i) handles->push_back(&tensorflow::HandleFromInput(ctx, i));
    for (int i = lo; i < std::min(hi, m_); ++i) handles->push_back(&tensorflow::HandleFromInput(ctx, n_ + i));
  }
};

// Tf1EmaUpdateByName: the handles are made once, from the containers and
// shared names of graph-mode VarHandleOps, exactly as those ops make them
// each step. With thousands of small variables, the VarHandleOps the executor
// would otherwise run every step cost as much as the whole update. An empty
// container means the op's `container` attribute, which TensorFlow fills
// like the VarHandleOps' own when a graph is imported under tf.container().
//
// The variables are looked up in the resource manager every run, as the
// ReadVariableOps and AssignSubVariableOps of TF1's graph do, so a variable
// deleted and created again under its name is always the one updated, even
// while another op still holds the deleted one (a cache that trusted a
// variable still alive would update the deleted one there). To keep that
// affordable with thousands of variables, the pairs are updated a group at a
// time: a group's variables are looked up, locked, checked and updated while
// they are still in the processor's cache, where four passes over all of
// them (lookup, lock, check, update) find each evicted again. A group's locks
// are held for its update only; TF1's graph holds one variable's per op.
class Tf1EmaUpdateByNameOp : public UpdateResourceBase {
 public:
  explicit Tf1EmaUpdateByNameOp(OpKernelConstruction* ctx) : UpdateResourceBase(ctx) {
    std::vector<std::string> containers, names;
    std::string container;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("containers", &containers));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shared_names", &names));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("container", &container));
    OP_REQUIRES(ctx, containers.size() == names.size() && static_cast<int>(names.size()) == n_ + m_,
                absl::InvalidArgumentError(absl::StrCat("Tf1EmaUpdateByName: ", containers.size(), " containers and ",
                                                        names.size(), " names for ", n_ + m_, " variables")));
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string& c = containers[i].empty() ? container : containers[i];
      handles_.push_back(tensorflow::MakeResourceHandle<Var>(ctx, c, names[i]));
    }
    // Pairs are updated in groups unless one name is used twice. A shadow
    // that is also another pair's value must be read before it is updated,
    // and a shadow listed twice must be refused: both need all pairs under
    // one set of locks. One name is one variable at any moment (one resource
    // manager, one type), so comparing names finds every such pair.
    std::vector<std::pair<std::string, std::string>> seen;
    for (const auto& h : handles_) seen.emplace_back(h.container(), h.name());
    std::sort(seen.begin(), seen.end());
    const bool repeated = std::adjacent_find(seen.begin(), seen.end()) != seen.end();
    group_ = repeated ? n_ : kPairsPerGroup;
    for (int lo = 0; lo < n_; lo += group_) groups_.emplace_back(std::make_unique<Group>());
  }

  void Compute(OpKernelContext* ctx) override {
    float one_minus_decay;
    OP_REQUIRES_OK(ctx, OneMinusDecay(ctx, ctx->num_inputs() - 1, &one_minus_decay));
    // A failing group leaves the groups before it updated, as a failing op
    // of TF1's graph leaves the updates that already ran.
    Prefetch(0);
    for (int lo = 0; lo < n_; lo += group_) {
      if (lo + group_ < n_) Prefetch(lo / group_ + 1);
      OP_REQUIRES_OK(ctx, UpdatePairs(ctx, lo, std::min(n_, lo + group_), one_minus_decay));
    }
  }

 protected:
  void Handles(OpKernelContext* ctx, int lo, int hi,
               std::vector<const tensorflow::ResourceHandle*>* handles) override {
    handles->clear();
    for (int i = lo; i < hi; ++i) handles->push_back(&handles_[i]);
    for (int i = lo; i < std::min(hi, m_); ++i) handles->push_back(&handles_[n_ + i]);
  }

  // One lookup per handle and run, under the resource manager's lock, by the
  // handle's precomputed type hash: LookupMany would hash the type's name and
  // allocate a string per variable, which costs more than a lock. The handles
  // were made here, for this device and type, so LookupResource's checks of
  // both are skipped. Only the lock order, which depends on the variables
  // found, is kept while they stay the same.
  absl::Status Variables(OpKernelContext* ctx, int lo, int hi,
                         const std::vector<const tensorflow::ResourceHandle*>& handles,
                         std::vector<tensorflow::core::RefCountPtr<Var>>* vars,
                         std::vector<std::pair<Var*, bool>>* order) override {
    tensorflow::ResourceMgr* rm = ctx->resource_manager();
    vars->resize(handles.size());
    for (size_t i = 0; i < handles.size(); ++i) {
      tensorflow::ResourceBase* found = nullptr;
      // The type hash is part of the key, so what is found is a Var.
      if (rm->Lookup(*handles[i], &found).ok()) (*vars)[i].reset(static_cast<Var*>(found));
    }
    TF_RETURN_IF_ERROR(CheckFound(ctx, handles, *vars));
    Group& group = *groups_[lo / group_];
    tensorflow::mutex_lock l(group.mu);
    bool same = group.vars.size() == vars->size();
    for (size_t i = 0; same && i < group.vars.size(); ++i) same = group.vars[i] == (*vars)[i].get();
    if (!same) {
      group.vars.clear();
      for (const auto& var : *vars) group.vars.push_back(var.get());
      LockOrder(*vars, hi - lo, &group.order);
    }
    *order = group.order;
    return absl::OkStatus();
  }

  // Remembers the memory this run of a group touches, for Prefetch next run.
  void Computing(int lo, const std::vector<Segment>& segments) override {
    Group& group = *groups_[lo / group_];
    tensorflow::mutex_lock l(group.mu);
    group.memory.clear();
    for (const Var* var : group.vars) group.memory.emplace_back(var, kBytesAtVariable);
    for (const Segment& g : segments) {
      const int64_t bytes = std::min<int64_t>(g.size * tensorflow::DataTypeSize(g.dtype), kBytesAtTensor);
      group.memory.emplace_back(g.shadow, bytes);
      group.memory.emplace_back(g.value, bytes);
    }
  }

  // Asks the processor to fetch what group `g` touched last run: each step
  // otherwise starts with its variables out of cache (other graphs ran in
  // between), and the lookups, locks and reads would wait for memory one
  // cache miss after another. Only a hint: the addresses are those of the
  // last run, never read here (a prefetch cannot fault, even on memory freed
  // since), and the variables used are the ones looked up this run.
  void Prefetch(int g) {
    Group& group = *groups_[g];
    tensorflow::mutex_lock l(group.mu);
    for (const auto& [address, bytes] : group.memory) {
      const char* p = static_cast<const char*>(address);
      for (int64_t b = 0; b < bytes; b += kCacheLine) __builtin_prefetch(p + b);
    }
  }

 private:
  // Pairs per group: a group's variables, values and shadows fit in the
  // processor's cache, and sorting its lock order stays cheap.
  static constexpr int kPairsPerGroup = 128;
  static constexpr int64_t kCacheLine = 64;
  // Bytes prefetched from a variable's address: the Var, and the bytes after
  // it, where the resource manager's copy of its name usually lies (the
  // manager allocates it right after the Var is created). Measured: about
  // 6% off a step of workload C against prefetching the Var alone.
  static constexpr int64_t kBytesAtVariable = 320;
  // Bytes prefetched from the start of a shadow's or value's data: a small
  // tensor whole; of a large one only enough for the processor's own
  // prefetcher to follow (a whole 256 MiB shadow would take longer to
  // prefetch, one line at a time on one thread, than to update).
  static constexpr int64_t kBytesAtTensor = 512;

  // The variables of a group's last run, compared by address only (never
  // dereferenced), their lock order, and the memory the run touched
  // (address, bytes), for Prefetch.
  struct Group {
    tensorflow::mutex mu;
    std::vector<const Var*> vars;
    std::vector<std::pair<Var*, bool>> order;
    std::vector<std::pair<const void*, int64_t>> memory;
  };

  std::vector<tensorflow::ResourceHandle> handles_;
  int group_ = 0;  // pairs per group
  std::vector<std::unique_ptr<Group>> groups_;
};

// ---------------------------------------------------------------------------
// Ref variables (TF1's classic `tf.Variable` with use_resource=False).
// ---------------------------------------------------------------------------

class Tf1EmaUpdateRefOp : public OpKernel {
 public:
  explicit Tf1EmaUpdateRefOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
  }

  void Compute(OpKernelContext* ctx) override {
    const int n = num_inputs() / 2;
    float one_minus_decay;
    OP_REQUIRES_OK(ctx, OneMinusDecay(ctx, 2 * n, &one_minus_decay));

    // Ref variables share their buffer by design: updated in place, like AssignSub.
    std::vector<tensorflow::mutex*> mutexes;
    for (int i = 0; i < n; ++i) mutexes.push_back(ctx->input_ref_mutex(i));
    std::vector<tensorflow::mutex*> order = mutexes;
    std::sort(order.begin(), order.end());
    OP_REQUIRES(ctx, std::adjacent_find(order.begin(), order.end()) == order.end(),
                absl::InvalidArgumentError("Tf1EmaUpdateRef: the same shadow variable appears twice"));
    std::vector<tensorflow::mutex_lock> locks;
    if (use_locking_) {
      locks.reserve(n);
      for (auto* mu : order) locks.emplace_back(*mu);
    }

    std::vector<Segment> segments(n);
    int64_t begin = 0;
    for (int i = 0; i < n; ++i) {
      Tensor shadow = ctx->mutable_input(i, use_locking_);
      const Tensor& value = ctx->input(n + i);
      OP_REQUIRES(ctx, shadow.IsInitialized(),
                  absl::FailedPreconditionError(absl::StrCat(
                      "Attempting to use uninitialized value ", requested_input(i))));
      OP_REQUIRES_OK(ctx, CheckPair(i, shadow, value));
      Segment& g = segments[i];
      g.dtype = shadow.dtype();
      g.shadow = shadow.data();
      g.value = value.data();
      g.out = shadow.data();
      g.begin = begin;
      g.size = shadow.NumElements();
      begin += g.size;
    }
    RunSegments(ctx, segments, one_minus_decay);
  }

 private:
  bool use_locking_ = false;
};

// ---------------------------------------------------------------------------
// A shadow's initial value: its variable's value if the variable is
// initialized, else the variable's initial value. TF1 builds this as a
// conditional (a VarIsInitializedOp or IsVariableInitialized and an If, or
// RefSwitch/Switch/Merge); one node does the same, and every node saved
// counts in the first session run, where Grappler optimizes the whole
// initializer graph node by node.
// ---------------------------------------------------------------------------

// Resource variables: VarIsInitializedOp's test, then ReadVariableOp's read.
// The variable is named by the container and shared name of its VarHandleOp,
// not passed as a handle: TensorFlow's guard against uninitialized
// dependencies (Variable.__init__) rewrites the inputs of an initial value
// and would turn a handle input into a value; this op has no such input.
class Tf1EmaInitialValueOp : public OpKernel {
 public:
  explicit Tf1EmaInitialValueOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string container, shared_name;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("T", &dtype_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("container", &container));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shared_name", &shared_name));
    handle_ = tensorflow::MakeResourceHandle<Var>(ctx, container, shared_name);
  }

  void Compute(OpKernelContext* ctx) override {
    tensorflow::core::RefCountPtr<Var> var;
    if (!tensorflow::LookupResource(ctx, handle_, &var).ok() || !var->is_initialized) {
      ctx->set_output(0, ctx->input(0));
      return;
    }
    tensorflow::tf_shared_lock lock(*var->mu());
    const Tensor& value = *var->tensor();
    OP_REQUIRES(ctx, value.dtype() == dtype_,
                absl::InvalidArgumentError(absl::StrCat(
                    "Trying to read variable with wrong dtype. Expected ", tensorflow::DataTypeString(dtype_),
                    " got ", tensorflow::DataTypeString(value.dtype()))));
    if (!var->copy_on_read_mode.load()) {
      ctx->set_output(0, value);  // shares the buffer, as ReadVariableOp does
      return;
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, value.shape(), &out));
    if (value.TotalBytes() > 0) std::memcpy(out->data(), value.data(), value.TotalBytes());
  }

 private:
  DataType dtype_;
  tensorflow::ResourceHandle handle_;
};

// Ref variables: IsVariableInitialized's test, then the value the variable
// holds. The variable's ref enters as a plain input, which the executor lets
// through uninitialized because the op allows uninitialized inputs (as
// IsVariableInitialized does); TensorFlow's guard may replace it by the
// variable's initialized value, which gives the same result.
class Tf1EmaInitialValueRefOp : public OpKernel {
 public:
  explicit Tf1EmaInitialValueRefOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& value = ctx->input(0);
    ctx->set_output(0, value.IsInitialized() ? value : ctx->input(1));
  }
};

}  // namespace
}  // namespace tf1_ema

namespace tensorflow {

REGISTER_OP("Tf1EmaInitialValue")
    .Input("initial_value: T")
    .Output("value: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("container: string = ''")
    .Attr("shared_name: string")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The value of the resource variable (container, shared_name) if it is initialized, else initial_value.
)doc");

REGISTER_OP("Tf1EmaInitialValueRef")
    .Input("variable: T")
    .Input("initial_value: T")
    .Output("value: T")
    .Attr("T: {half, bfloat16, float, double}")
    .SetAllowsUninitializedInput()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    })
    .Doc(R"doc(
variable (a ref variable's value) if it is initialized, else initial_value.
)doc");

REGISTER_KERNEL_BUILDER(Name("Tf1EmaInitialValue").Device(DEVICE_CPU), tf1_ema::Tf1EmaInitialValueOp);
REGISTER_KERNEL_BUILDER(Name("Tf1EmaInitialValueRef").Device(DEVICE_CPU), tf1_ema::Tf1EmaInitialValueRefOp);

REGISTER_OP("Tf1EmaUpdate")
    .Input("shadows: N * resource")
    .Input("variables: M * resource")
    .Input("tensors: T")
    .Input("one_minus_decay: float")
    .Attr("N: int >= 1")
    .Attr("M: int >= 0")
    .Attr("T: list({half, bfloat16, float, double}) >= 0")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle unused;
      return c->WithRank(c->input(c->num_inputs() - 1), 0, &unused);
    })
    .Doc(R"doc(
For each i: shadows[i] -= (shadows[i] - value[i]) * cast(one_minus_decay, dtype[i]),
rounding to dtype[i] after every operation, as TF1's ExponentialMovingAverage does.
value[i] is the variable variables[i] for i < M, else the tensor tensors[i - M].
)doc");

REGISTER_OP("Tf1EmaUpdateByName")
    .Input("tensors: T")
    .Input("one_minus_decay: float")
    .Attr("N: int >= 1")
    .Attr("M: int >= 0")
    .Attr("T: list({half, bfloat16, float, double}) >= 0")
    .Attr("containers: list(string)")
    .Attr("shared_names: list(string)")
    .Attr("container: string = ''")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle unused;
      return c->WithRank(c->input(c->num_inputs() - 1), 0, &unused);
    })
    .Doc(R"doc(
Tf1EmaUpdate with the N shadows and M value variables named by the containers
and shared names of their VarHandleOps (shadows first) instead of handle inputs.
)doc");

REGISTER_OP("Tf1EmaUpdateRef")
    .Input("shadows: Ref(T)")
    .Input("values: T")
    .Input("one_minus_decay: float")
    .Attr("T: list({half, bfloat16, float, double})")
    .Attr("use_locking: bool = false")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle unused;
      return c->WithRank(c->input(c->num_inputs() - 1), 0, &unused);
    })
    .Doc(R"doc(
Tf1EmaUpdate for ref variables: updates in place, locking only with use_locking.
)doc");

REGISTER_KERNEL_BUILDER(Name("Tf1EmaUpdate").Device(DEVICE_CPU), tf1_ema::Tf1EmaUpdateOp);
REGISTER_KERNEL_BUILDER(Name("Tf1EmaUpdateByName").Device(DEVICE_CPU), tf1_ema::Tf1EmaUpdateByNameOp);
REGISTER_KERNEL_BUILDER(Name("Tf1EmaUpdateRef").Device(DEVICE_CPU), tf1_ema::Tf1EmaUpdateRefOp);

}  // namespace tensorflow
