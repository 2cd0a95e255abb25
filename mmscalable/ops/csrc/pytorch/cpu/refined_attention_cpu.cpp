// Copyright (c) mmscalable contributors. All rights reserved.
//
// CPU kernels of the fused refined attention (see
// common/refined_attention_utils.h for the computation).
//
// A task owns a tile of query rows of one image and streams down them,
// keeping the map rows, the hidden rows and (in backward) their gradients in
// rolling buffers of three rows: the 3x3 convolution needs a row and its two
// neighbours, so no N x N x E tensor is ever formed, and a tile recomputes
// only the halo rows above and below it. The 1x1 convolutions and the
// products with V are matrix products of a row's channels (BLAS through
// at::mm, single-threaded inside the tasks); the depthwise convolution and
// the epilogues are loops along a row of N keys, contiguous in every buffer,
// that compilers vectorise. Half and bfloat16 inputs are converted row by
// row and accumulated in float.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

#include <algorithm>
#include <vector>

#include "refined_attention_utils.h"

namespace mmscalable {
namespace {

namespace ra = refined_attention;

// Query rows per task: enough that the halo rows a tile recomputes cost
// little, few enough that a batch-1 map still gives every thread work.
constexpr int64_t kRowsPerTask = 32;
// Rows of the refined map multiplied with V (or, in backward, added into the
// gradient of V) by one matrix product.
constexpr int64_t kRowsPerProduct = 16;
// Columns of the depthwise convolution whose sums stay in registers.
constexpr int64_t kChunk = 32;
// Independent partial sums of a dot product (vectorisable without
// reassociating floating-point additions).
constexpr int64_t kLanes = 16;

template <typename acc_t>
using FoldedParams = ra::FoldedRefinement<acc_t>;

// Keeps the BLAS calls of a task on the task's thread. MKL, which torch's
// x86-64 builds link, otherwise starts its own threads inside every
// at::parallel_for task: with 2 threads a Refiner-ViT-S block at 512x512
// took 2.0 s instead of 0.21 s. MKL_Set_Num_Threads_Local is looked up at
// run time, so builds with another BLAS need nothing.
class TaskLocalBlasThreads {
 public:
  TaskLocalBlasThreads() {
    if (set_local() != nullptr) previous_ = set_local()(1);
  }
  ~TaskLocalBlasThreads() {
    if (set_local() != nullptr) set_local()(previous_);
  }

 private:
  using SetLocal = int (*)(int);
  static SetLocal set_local() {
#if defined(__unix__) || defined(__APPLE__)
    static const SetLocal fn = reinterpret_cast<SetLocal>(
        dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
    return fn;
#else
    return nullptr;
#endif
  }
  int previous_ = 0;
};

// A row-major matrix in a buffer: `rows` x `cols`, rows `stride` apart.
template <typename acc_t>
struct Matrix {
  acc_t* data;
  int64_t rows, cols, stride;

  at::Tensor tensor() const {
    return at::from_blob(
        data, {rows, cols}, {stride, 1},
        at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
  }
};

template <typename acc_t>
Matrix<acc_t> matrix(const acc_t* data, int64_t rows, int64_t cols,
                     int64_t stride) {
  return {const_cast<acc_t*>(data), rows, cols, stride};
}

// out = a @ b, or out += a @ b with `accumulate`; a or b transposed with
// `transpose_a` / `transpose_b` (their Matrix describes the stored layout).
template <typename acc_t>
void matmul(const Matrix<acc_t>& a, const Matrix<acc_t>& b,
            const Matrix<acc_t>& out, bool accumulate = false,
            bool transpose_a = false, bool transpose_b = false) {
  at::Tensor lhs = a.tensor(), rhs = b.tensor(), dst = out.tensor();
  if (transpose_a) lhs = lhs.t();
  if (transpose_b) rhs = rhs.t();
  if (accumulate) {
    dst.addmm_(lhs, rhs);
  } else {
    at::mm_out(dst, lhs, rhs);
  }
}

template <typename acc_t>
acc_t dot(const acc_t* x, const acc_t* y, int64_t n) {
  acc_t lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += x[i + l] * y[i + l];
  }
  acc_t total = 0;
  for (; i < n; ++i) total += x[i] * y[i];
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

template <typename acc_t>
acc_t sum(const acc_t* x, int64_t n) {
  acc_t lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += x[i + l];
  }
  acc_t total = 0;
  for (; i < n; ++i) total += x[i];
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// The rolling rows of one task: the map rows (converted), the hidden rows
// before and after their activation. Hidden rows carry one zero column on
// each side (the conv's padding), so taps need no bounds checks; rows
// outside the map are all zero.
template <typename scalar_t, typename acc_t>
class HiddenRows {
 public:
  HiddenRows(const scalar_t* attn, const FoldedParams<acc_t>& p, int64_t n)
      : attn_(attn),
        p_(p),
        n_(n),
        padded_(n + 2 * ra::kHalo),
        maps_(ra::kRingRows * p.heads * n),
        pre_(ra::kRingRows * p.hidden * padded_, acc_t(0)),
        act_(ra::kRingRows * p.hidden * padded_, acc_t(0)) {}

  int64_t padded() const { return padded_; }

  // Map row `row` of head h (zeros outside the map).
  const acc_t* map_row(int64_t row, int64_t h) const {
    return maps_.data() + (ra::ring_slot(row) * p_.heads + h) * n_;
  }
  // Hidden row of channel e, from column -kHalo: relu6(z1), or z1 itself.
  const acc_t* hidden_row(int64_t row, int64_t e) const {
    return act_.data() + (ra::ring_slot(row) * p_.hidden + e) * padded_;
  }
  const acc_t* pre_activation_row(int64_t row, int64_t e) const {
    return pre_.data() + (ra::ring_slot(row) * p_.hidden + e) * padded_;
  }

  // Loads map row `row` and expands it (the 1x1 conv and relu6).
  void load(int64_t row) {
    const int slot = ra::ring_slot(row);
    acc_t* maps = maps_.data() + slot * p_.heads * n_;
    acc_t* pre = pre_.data() + slot * p_.hidden * padded_;
    acc_t* act = act_.data() + slot * p_.hidden * padded_;
    if (!ra::row_in_map(row, n_)) {
      std::fill_n(maps, p_.heads * n_, acc_t(0));
      std::fill_n(act, p_.hidden * padded_, acc_t(0));
      return;
    }
    for (int64_t h = 0; h < p_.heads; ++h) {
      const scalar_t* src = attn_ + (h * n_ + row) * n_;
      acc_t* dst = maps + h * n_;
      for (int64_t c = 0; c < n_; ++c) dst[c] = static_cast<acc_t>(src[c]);
    }
    matmul(matrix(p_.w_expand, p_.hidden, p_.heads, p_.heads),
           matrix(maps, p_.heads, n_, n_),
           matrix(pre + ra::kHalo, p_.hidden, n_, padded_));
    for (int64_t e = 0; e < p_.hidden; ++e) {
      acc_t* z = pre + e * padded_ + ra::kHalo;
      acc_t* y = act + e * padded_ + ra::kHalo;
      const acc_t bias = p_.b_expand[e];
      for (int64_t c = 0; c < n_; ++c) {
        z[c] += bias;
        y[c] = ra::relu6(z[c]);
      }
    }
  }

 private:
  const scalar_t* attn_;
  const FoldedParams<acc_t>& p_;
  int64_t n_;
  int64_t padded_;
  std::vector<acc_t> maps_;
  std::vector<acc_t> pre_;
  std::vector<acc_t> act_;
};

// z2 (pre-activation) and h2 = relu6(z2), each E x N, of map row `row`
// from the rolling hidden rows.
template <typename scalar_t, typename acc_t>
void depthwise_row(const HiddenRows<scalar_t, acc_t>& rows,
                   const FoldedParams<acc_t>& p, int64_t row, int64_t n,
                   acc_t* z2, acc_t* h2) {
  for (int64_t e = 0; e < p.hidden; ++e) {
    const acc_t* src[ra::kKernelSize];
    for (int dy = -ra::kHalo; dy <= ra::kHalo; ++dy) {
      src[dy + ra::kHalo] = rows.hidden_row(row + dy, e) + ra::kHalo;
    }
    const acc_t* w = p.w_depthwise + e * ra::kTaps;
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      const int64_t width = std::min(kChunk, n - c0);
      acc_t z[kChunk];
      for (int64_t c = 0; c < kChunk; ++c) z[c] = p.b_depthwise[e];
      for (int dy = -ra::kHalo; dy <= ra::kHalo; ++dy) {
        for (int dx = -ra::kHalo; dx <= ra::kHalo; ++dx) {
          const acc_t tap = w[ra::tap_index(dy, dx)];
          // Columns c0 + dx .. c0 + width - 1 + dx lie in [-1, n]: inside
          // the padded row.
          const acc_t* x = src[dy + ra::kHalo] + c0 + dx;
          for (int64_t c = 0; c < width; ++c) z[c] += tap * x[c];
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        z2[e * n + c0 + c] = z[c];
        h2[e * n + c0 + c] = ra::relu6(z[c]);
      }
    }
  }
}

// The refined map's row, N values per head `head_stride` apart, from
// h2 = relu6(z2) and the map row.
template <typename scalar_t, typename acc_t>
void refined_row(const HiddenRows<scalar_t, acc_t>& rows,
                 const FoldedParams<acc_t>& p, int64_t row, int64_t n,
                 const acc_t* h2, acc_t* refined, int64_t head_stride) {
  matmul(matrix(p.w_reduce, p.heads, p.hidden, p.hidden),
         matrix(h2, p.hidden, n, n), matrix(refined, p.heads, n, head_stride));
  for (int64_t h = 0; h < p.heads; ++h) {
    acc_t* m = refined + h * head_stride;
    const acc_t* a = rows.map_row(row, h);
    const acc_t alpha = p.alpha[h], bias = p.b_reduce[h];
    for (int64_t c = 0; c < n; ++c) {
      m[c] = ra::refined_value(alpha, a[c], bias, m[c]);
    }
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& attn, const at::Tensor& value_acc,
                    const FoldedParams<at::opmath_type<scalar_t>>& p,
                    at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t batch = attn.size(0), heads = p.heads, n = attn.size(2);
  const int64_t dims = value_acc.size(3), hidden = p.hidden;
  const int64_t tiles = ra::num_tiles(n, kRowsPerTask);
  const scalar_t* attn_data = attn.const_data_ptr<scalar_t>();
  const acc_t* value = value_acc.const_data_ptr<acc_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
    // The matrix products below are plain computations on buffers.
    c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
    TaskLocalBlasThreads one_blas_thread;
    std::vector<acc_t> z2(hidden * n), h2(hidden * n);
    std::vector<acc_t> refined(heads * kRowsPerProduct * n);
    std::vector<acc_t> product(kRowsPerProduct * dims);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles;
      int64_t first, last;
      ra::tile_rows(task % tiles, kRowsPerTask, n, &first, &last);
      HiddenRows<scalar_t, acc_t> rows(attn_data + b * heads * n * n, p, n);
      rows.load(first - 1);
      rows.load(first);
      for (int64_t block = first; block < last; block += kRowsPerProduct) {
        const int64_t count = std::min(kRowsPerProduct, last - block);
        for (int64_t i = 0; i < count; ++i) {
          const int64_t row = block + i;
          rows.load(row + 1);
          depthwise_row(rows, p, row, n, z2.data(), h2.data());
          // The block's refined rows, grouped by head: (H, rows, N).
          refined_row(rows, p, row, n, h2.data(), refined.data() + i * n,
                      kRowsPerProduct * n);
        }
        for (int64_t h = 0; h < heads; ++h) {
          matmul(matrix(refined.data() + h * kRowsPerProduct * n, count, n, n),
                 matrix(value + (b * heads + h) * n * dims, n, dims, dims),
                 matrix(product.data(), count, dims, dims));
          scalar_t* dst = out_data + ((b * heads + h) * n + block) * dims;
          for (int64_t i = 0; i < count * dims; ++i) {
            dst[i] = static_cast<scalar_t>(product[i]);
          }
        }
      }
    }
  });
}

// Gradients of one thread's tasks, summed over threads at the end.
template <typename acc_t>
struct GradAccumulator {
  GradAccumulator(int64_t heads, int64_t hidden, int64_t value_numel)
      : w_expand(hidden * heads, 0),
        b_expand(hidden, 0),
        w_depthwise(hidden * ra::kTaps, 0),
        b_depthwise(hidden, 0),
        w_reduce(heads * hidden, 0),
        b_reduce(heads, 0),
        alpha(heads, 0),
        value(value_numel, 0) {}
  std::vector<acc_t> w_expand, b_expand, w_depthwise, b_depthwise, w_reduce,
      b_reduce, alpha, value;
};

// Backward of a tile of query rows [first, last), streaming down the rows:
// at step s the hidden rows of s + 1 are computed, then the gradient of the
// depthwise conv's output at row s (which needs the gradient of the refined
// map at s, from grad_out and V), then everything owned by row s - 1, whose
// gradient through the depthwise conv needs rows s - 2 .. s.
template <typename scalar_t>
class TileBackward {
 public:
  using acc_t = at::opmath_type<scalar_t>;

  TileBackward(const scalar_t* attn, const acc_t* grad_out,
               const acc_t* value_t, const FoldedParams<acc_t>& p, int64_t n,
               int64_t dims, scalar_t* grad_attn, acc_t* grad_value,
               GradAccumulator<acc_t>& grads)
      : rows_(attn, p, n),
        grad_out_(grad_out),
        value_t_(value_t),
        p_(p),
        n_(n),
        dims_(dims),
        grad_attn_(grad_attn),
        grad_value_(grad_value),
        grads_(grads),
        z2_(p.hidden * n),
        h2_(p.hidden * n),
        refined_(p.heads * kRowsPerProduct * n),
        grad_refined_(ra::kRingRows * p.heads * n),
        grad_z2_(ra::kRingRows * p.hidden * rows_.padded(), acc_t(0)),
        grad_z1_(p.hidden * n),
        grad_map_(p.heads * n) {}

  void run(int64_t first, int64_t last) {
    rows_.load(first - 2);
    rows_.load(first - 1);
    block_first_ = first;
    for (int64_t s = first - 1; s <= last; ++s) {
      rows_.load(s + 1);
      through_depthwise(s, s >= first && s < last);
      if (s - 1 >= first) owned_row(s - 1);
    }
    flush_value_grads(last);
  }

 private:
  acc_t* grad_refined_row(int64_t row, int64_t h) {
    return grad_refined_.data() + (ra::ring_slot(row) * p_.heads + h) * n_;
  }
  acc_t* grad_z2_row(int64_t row, int64_t e) {
    return grad_z2_.data() +
           (ra::ring_slot(row) * p_.hidden + e) * rows_.padded();
  }

  // Gradient at row s of the depthwise conv's output; with `owned`, the
  // gradients of the reduce conv, the depthwise kernels and V that row s
  // contributes.
  void through_depthwise(int64_t s, bool owned) {
    const int64_t n = n_, heads = p_.heads, hidden = p_.hidden;
    const int64_t padded = rows_.padded();
    if (!ra::row_in_map(s, n)) {
      std::fill_n(grad_z2_row(s, 0), hidden * padded, acc_t(0));
      return;
    }
    depthwise_row(rows_, p_, s, n, z2_.data(), h2_.data());
    // dL/dM at row s: each head's grad_out row times V^T ((d, N) per head).
    for (int64_t h = 0; h < heads; ++h) {
      matmul(matrix(grad_out_ + (h * n + s) * dims_, 1, dims_, dims_),
             matrix(value_t_ + h * dims_ * n, dims_, n, n),
             matrix(grad_refined_row(s, h), 1, n, n));
    }
    const Matrix<acc_t> grad_refined =
        matrix(grad_refined_row(s, 0), heads, n, n);
    // dL/dh2 = w_reduce^T dL/dM, then through relu6.
    matmul(matrix(p_.w_reduce, heads, hidden, hidden), grad_refined,
           matrix(grad_z2_row(s, 0) + ra::kHalo, hidden, n, padded),
           /*accumulate=*/false, /*transpose_a=*/true);
    for (int64_t e = 0; e < hidden; ++e) {
      acc_t* gz = grad_z2_row(s, e) + ra::kHalo;
      const acc_t* z = z2_.data() + e * n;
      for (int64_t c = 0; c < n; ++c) {
        gz[c] = ra::relu6_backward(z[c], gz[c]);
      }
    }
    if (!owned) return;
    const int64_t slot = s - block_first_;
    if (slot == kRowsPerProduct) flush_value_grads(s);
    refined_row(rows_, p_, s, n, h2_.data(),
                refined_.data() + (s - block_first_) * n,
                kRowsPerProduct * n);
    matmul(grad_refined, matrix(h2_.data(), hidden, n, n),
           matrix(grads_.w_reduce.data(), heads, hidden, hidden),
           /*accumulate=*/true, /*transpose_a=*/false, /*transpose_b=*/true);
    for (int64_t h = 0; h < heads; ++h) {
      const acc_t* gm = grad_refined_row(s, h);
      grads_.alpha[h] += dot(gm, rows_.map_row(s, h), n);
      grads_.b_reduce[h] += sum(gm, n);
    }
    for (int64_t e = 0; e < hidden; ++e) {
      const acc_t* gz = grad_z2_row(s, e) + ra::kHalo;
      grads_.b_depthwise[e] += sum(gz, n);
      for (int dy = -ra::kHalo; dy <= ra::kHalo; ++dy) {
        const acc_t* src = rows_.hidden_row(s + dy, e) + ra::kHalo;
        for (int dx = -ra::kHalo; dx <= ra::kHalo; ++dx) {
          grads_.w_depthwise[e * ra::kTaps + ra::tap_index(dy, dx)] +=
              dot(gz, src + dx, n);
        }
      }
    }
  }

  // dL/dV += M^T grad_out over the owned rows [block_first_, end) whose
  // refined rows are held, then starts a new block at `end`.
  void flush_value_grads(int64_t end) {
    const int64_t count = end - block_first_;
    if (count > 0) {
      for (int64_t h = 0; h < p_.heads; ++h) {
        matmul(matrix(refined_.data() + h * kRowsPerProduct * n_, count, n_,
                      n_),
               matrix(grad_out_ + (h * n_ + block_first_) * dims_, count,
                      dims_, dims_),
               matrix(grad_value_ + h * n_ * dims_, n_, dims_, dims_),
               /*accumulate=*/true, /*transpose_a=*/true);
      }
    }
    block_first_ = end;
  }

  // Gradients of the map row r (written) and of the expand conv.
  void owned_row(int64_t r) {
    const int64_t n = n_, heads = p_.heads, hidden = p_.hidden;
    for (int64_t e = 0; e < hidden; ++e) {
      // The transposed depthwise conv: h1 at (r, c) fed z2 at
      // (r - dy, c - dx) through tap (dy, dx).
      acc_t* gz1 = grad_z1_.data() + e * n;
      const acc_t* w = p_.w_depthwise + e * ra::kTaps;
      for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t width = std::min(kChunk, n - c0);
        acc_t g[kChunk] = {};
        for (int dy = -ra::kHalo; dy <= ra::kHalo; ++dy) {
          const acc_t* gz2 = grad_z2_row(r - dy, e) + ra::kHalo + c0;
          for (int dx = -ra::kHalo; dx <= ra::kHalo; ++dx) {
            const acc_t tap = w[ra::tap_index(dy, dx)];
            for (int64_t c = 0; c < width; ++c) g[c] += tap * gz2[c - dx];
          }
        }
        const acc_t* z1 = rows_.pre_activation_row(r, e) + ra::kHalo + c0;
        for (int64_t c = 0; c < width; ++c) {
          gz1[c0 + c] = ra::relu6_backward(z1[c], g[c]);
        }
      }
      grads_.b_expand[e] += sum(gz1, n);
    }
    const Matrix<acc_t> grad_z1 = matrix(grad_z1_.data(), hidden, n, n);
    const Matrix<acc_t> map = matrix(rows_.map_row(r, 0), heads, n, n);
    matmul(grad_z1, map, matrix(grads_.w_expand.data(), hidden, heads, heads),
           /*accumulate=*/true, /*transpose_a=*/false, /*transpose_b=*/true);
    // dL/dA = alpha * dL/dM + w_expand^T dL/dz1.
    matmul(matrix(p_.w_expand, hidden, heads, heads), grad_z1,
           matrix(grad_map_.data(), heads, n, n), /*accumulate=*/false,
           /*transpose_a=*/true);
    for (int64_t h = 0; h < heads; ++h) {
      const acc_t* ga = grad_map_.data() + h * n;
      const acc_t* gm = grad_refined_row(r, h);
      const acc_t alpha = p_.alpha[h];
      scalar_t* dst = grad_attn_ + (h * n + r) * n;
      for (int64_t c = 0; c < n; ++c) {
        dst[c] = static_cast<scalar_t>(ga[c] + alpha * gm[c]);
      }
    }
  }

  HiddenRows<scalar_t, acc_t> rows_;
  const acc_t* grad_out_;
  const acc_t* value_t_;
  const FoldedParams<acc_t>& p_;
  int64_t n_, dims_;
  scalar_t* grad_attn_;
  acc_t* grad_value_;
  GradAccumulator<acc_t>& grads_;
  int64_t block_first_ = 0;
  std::vector<acc_t> z2_, h2_, refined_, grad_refined_, grad_z2_, grad_z1_,
      grad_map_;
};

}  // namespace

at::Tensor refined_attention_forward_cpu(
    const at::Tensor& attn, const at::Tensor& value, const at::Tensor& w_expand,
    const at::Tensor& b_expand, const at::Tensor& w_depthwise,
    const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
    const at::Tensor& b_reduce, const at::Tensor& alpha) {
  at::Tensor out = at::empty(value.sizes(), value.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, attn.scalar_type(),
      "refined_attention_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
        const at::Tensor value_acc = value.to(acc_dtype).contiguous();
        const auto p = ra::folded_refinement<acc_t>(
            w_expand, b_expand, w_depthwise, b_depthwise, w_reduce, b_reduce,
            alpha);
        forward_kernel<scalar_t>(attn, value_acc, p, out);
      });
  return out;
}

std::vector<at::Tensor> refined_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& attn, const at::Tensor& value,
    const at::Tensor& w_expand, const at::Tensor& b_expand,
    const at::Tensor& w_depthwise, const at::Tensor& b_depthwise,
    const at::Tensor& w_reduce, const at::Tensor& b_reduce,
    const at::Tensor& alpha) {
  at::Tensor grad_attn = at::empty(attn.sizes(), attn.options());
  std::vector<at::Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, attn.scalar_type(),
      "refined_attention_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
        const at::Tensor grad_out_acc = grad_out.to(acc_dtype).contiguous();
        // (B, H, d, N): the gradient of the refined map reads V by keys.
        const at::Tensor value_t =
            value.to(acc_dtype).transpose(2, 3).contiguous();
        const auto p = ra::folded_refinement<acc_t>(
            w_expand, b_expand, w_depthwise, b_depthwise, w_reduce, b_reduce,
            alpha);
        const int64_t batch = attn.size(0), heads = p.heads, n = attn.size(2);
        const int64_t dims = value.size(3);
        const int64_t tiles = ra::num_tiles(n, kRowsPerTask);
        // One accumulator per thread: tiles of different threads add to the
        // same V rows and parameters.
        std::vector<GradAccumulator<acc_t>> per_thread(
            at::get_num_threads(),
            GradAccumulator<acc_t>(heads, p.hidden, value.numel()));
        const scalar_t* attn_data = attn.const_data_ptr<scalar_t>();
        scalar_t* grad_attn_data = grad_attn.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
          c10::impl::ExcludeDispatchKeyGuard no_autograd(
              c10::autograd_dispatch_keyset);
          TaskLocalBlasThreads one_blas_thread;
          GradAccumulator<acc_t>& acc = per_thread[at::get_thread_num()];
          for (int64_t task = begin; task < end; ++task) {
            const int64_t b = task / tiles;
            int64_t first, last;
            ra::tile_rows(task % tiles, kRowsPerTask, n, &first, &last);
            const int64_t map_offset = b * heads * n * n;
            const int64_t value_offset = b * heads * n * dims;
            TileBackward<scalar_t> tile(
                attn_data + map_offset,
                grad_out_acc.const_data_ptr<acc_t>() + value_offset,
                value_t.const_data_ptr<acc_t>() + value_offset, p, n, dims,
                grad_attn_data + map_offset, acc.value.data() + value_offset,
                acc);
            tile.run(first, last);
          }
        });
        const auto opts = w_expand.options();
        auto summed = [&](auto member, at::IntArrayRef shape) {
          at::Tensor total = at::zeros(shape, opts);
          acc_t* dst = total.mutable_data_ptr<acc_t>();
          for (const auto& acc : per_thread) {
            const auto& src = acc.*member;
            for (size_t i = 0; i < src.size(); ++i) dst[i] += src[i];
          }
          return total;
        };
        using Acc = GradAccumulator<acc_t>;
        grads = {grad_attn,
                 summed(&Acc::value, value.sizes()).to(value.scalar_type()),
                 summed(&Acc::w_expand, w_expand.sizes()),
                 summed(&Acc::b_expand, b_expand.sizes()),
                 summed(&Acc::w_depthwise, w_depthwise.sizes()),
                 summed(&Acc::b_depthwise, b_depthwise.sizes()),
                 summed(&Acc::w_reduce, w_reduce.sizes()),
                 summed(&Acc::b_reduce, b_reduce.sizes()),
                 summed(&Acc::alpha, alpha.sizes())};
      });
  return grads;
}

}  // namespace mmscalable
