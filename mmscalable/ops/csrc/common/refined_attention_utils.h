// Copyright (c) mmscalable contributors. All rights reserved.
//
// Arithmetic of the fused refined attention shared by its CPU and CUDA
// kernels (pytorch/cpu/refined_attention_cpu.cpp,
// pytorch/cuda/refined_attention_cuda.cu).
//
// The op computes, per image and head h, with the refinement's BatchNorms
// (frozen) and the block's scale folded into the convolutions:
//
//   z1[e]  = b_expand[e] + sum_h w_expand[e, h] * A[h]             (1x1)
//   h1[e]  = relu6(z1[e]) inside the N x N map, 0 outside it
//   z2[e]  = b_depthwise[e] + sum_taps w_depthwise[e, tap] * h1[e] (3x3)
//   h2[e]  = relu6(z2[e])
//   M[h]   = alpha[h] * A[h] + b_reduce[h] + sum_e w_reduce[h, e] * h2[e]
//   out[h] = M[h] @ V[h]
//
// with A the (heads, N, N) maps (rows are queries, columns keys), e over the
// expanded channels and V the (heads, N, d) values. The 3x3 convolution pads
// the *hidden* map h1 with zeros, which is not h1 of A = 0 (the folded bias
// of the first norm): the kernels zero it outside the map explicitly.
//
// Layouts (all contiguous): attn (B, H, N, N), value and out (B, H, N, d),
// w_expand (E, H), w_depthwise (E, 3, 3), w_reduce (H, E), biases and alpha
// one value per channel.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "host_device.h"

namespace mmscalable {
namespace refined_attention {

// Side of the depthwise kernel and its reach on each side of a pixel.
constexpr int kKernelSize = 3;
constexpr int kHalo = kKernelSize / 2;
constexpr int kTaps = kKernelSize * kKernelSize;

// Rows kept in the kernels' rolling buffers: a row and its neighbours.
constexpr int kRingRows = kKernelSize;

// The op's seven parameter tensors (norms and scale folded in), contiguous,
// in the accumulation type, and the sizes they imply.
template <typename T>
struct FoldedRefinement {
  const T* w_expand;     // (E, H)
  const T* b_expand;     // (E)
  const T* w_depthwise;  // (E, 3, 3)
  const T* b_depthwise;  // (E)
  const T* w_reduce;     // (H, E)
  const T* b_reduce;     // (H)
  const T* alpha;        // (H)
  int64_t heads;
  int64_t hidden;
};

// The struct over the op's parameter tensors (checked and contiguous, of
// type T), on the host; the kernels get it by value.
template <typename T>
FoldedRefinement<T> folded_refinement(
    const at::Tensor& w_expand, const at::Tensor& b_expand,
    const at::Tensor& w_depthwise, const at::Tensor& b_depthwise,
    const at::Tensor& w_reduce, const at::Tensor& b_reduce,
    const at::Tensor& alpha) {
  return {w_expand.const_data_ptr<T>(),    b_expand.const_data_ptr<T>(),
          w_depthwise.const_data_ptr<T>(), b_depthwise.const_data_ptr<T>(),
          w_reduce.const_data_ptr<T>(),    b_reduce.const_data_ptr<T>(),
          alpha.const_data_ptr<T>(),       w_reduce.size(0),
          w_expand.size(0)};
}

template <typename T>
MMSCALABLE_HOST_DEVICE T relu6(T x) {
  // Written with comparisons (not fmin/fmax) so that compilers vectorise it;
  // a NaN passes through, as torch's ReLU6 (hardtanh) lets it.
  return x < T(0) ? T(0) : (x > T(6) ? T(6) : x);
}

// Gradient through relu6 at pre-activation z: hardtanh's rule, which passes
// it strictly inside (0, 6).
template <typename T>
MMSCALABLE_HOST_DEVICE T relu6_backward(T z, T grad) {
  return (z > T(0) && z < T(6)) ? grad : T(0);
}

// The refined map from the map, the reduced hidden maps and the folded
// bias: the residual A + R(A), normalised and scaled.
template <typename T>
MMSCALABLE_HOST_DEVICE T refined_value(T alpha, T attn, T bias, T reduced) {
  return alpha * attn + bias + reduced;
}

MMSCALABLE_HOST_DEVICE bool row_in_map(int64_t row, int64_t num_tokens) {
  return row >= 0 && row < num_tokens;
}

// Slot of a map row in a rolling buffer of kRingRows rows; rows outside the
// map (-2, -1, N, N + 1) get slots too, which the kernels hold at zero.
MMSCALABLE_HOST_DEVICE int ring_slot(int64_t row) {
  const int64_t slot = row % kRingRows;
  return static_cast<int>(slot < 0 ? slot + kRingRows : slot);
}

// Index of tap (dy, dx), each in [-kHalo, kHalo], in a channel's kernel.
MMSCALABLE_HOST_DEVICE int tap_index(int dy, int dx) {
  return (dy + kHalo) * kKernelSize + (dx + kHalo);
}

// Query rows [first, last) of the tile `tile` of `rows_per_tile` rows.
MMSCALABLE_HOST_DEVICE void tile_rows(int64_t tile, int64_t rows_per_tile,
                                      int64_t num_tokens, int64_t* first,
                                      int64_t* last) {
  *first = tile * rows_per_tile;
  const int64_t end = *first + rows_per_tile;
  *last = end < num_tokens ? end : num_tokens;
}

MMSCALABLE_HOST_DEVICE int64_t num_tiles(int64_t num_tokens,
                                         int64_t rows_per_tile) {
  return (num_tokens + rows_per_tile - 1) / rows_per_tile;
}

// ---------------------------------------------------------------------------
// Launch planning of the CUDA kernels (common/cuda/
// refined_attention_cuda_kernel.cuh), host arithmetic only: the .cu file
// plans with the device's shared memory per block, the tests' emulation with
// smaller budgets to force small tiles, and the Python side asks
// `cuda_kernels_fit` before it routes maps to the kernels.

// Heads a CUDA thread keeps sums for in registers (Refiner-ViT has 6 to 16).
constexpr int kMaxCudaHeads = 32;
// Threads per block of every kernel.
constexpr int kCudaThreads = 256;

enum class CudaKernel { kForward, kBackwardRows, kBackwardValue };

// Shared memory of `kernel` for a tile of rows x cols, in elements of the
// accumulation type.
//   forward, backward_value: the maps and z1 with a one-position halo, the
//     refined tile, and the product (rows x d) / sums (cols x d) per head;
//   backward_rows: maps and z1 with a two-position halo; z2, its gradient
//     and the refined map's gradient with one; z1's gradient at the tile's
//     own positions; the parameters' gradients.
inline int64_t cuda_shared_elements(CudaKernel kernel, int64_t heads,
                                    int64_t hidden, int64_t dims, int rows,
                                    int cols) {
  const int64_t plane1 = int64_t(rows + 2) * (cols + 2);
  if (kernel == CudaKernel::kBackwardRows) {
    const int64_t plane2 = int64_t(rows + 4) * (cols + 4);
    const int64_t params = hidden * heads * 2 + hidden * (kTaps + 2) +
                           heads * 2;
    return (heads + hidden) * plane2 + (2 * hidden + heads) * plane1 +
           hidden * rows * cols + params;
  }
  const int64_t refine = (heads + hidden) * plane1 + heads * rows * cols;
  const int64_t per_head = kernel == CudaKernel::kForward ? rows : cols;
  return refine + heads * per_head * dims;
}

// How one kernel is launched: the tile, the blocks (tiles x images, all on
// the grid's x axis, which takes up to 2^31 - 1 blocks) and the dynamic
// shared memory. rows == 0 when no tile fits.
struct CudaLaunchPlan {
  int rows = 0;
  int cols = 0;
  int64_t tiles_per_image = 0;
  int64_t blocks = 0;
  int64_t shared_bytes = 0;
};

// The largest candidate tile of `kernel` whose shared memory fits
// `shared_limit` bytes, for `batch` images of (heads, n, n) maps.
inline CudaLaunchPlan plan_cuda_launch(CudaKernel kernel, int64_t batch,
                                       int64_t heads, int64_t hidden,
                                       int64_t n, int64_t dims,
                                       int64_t element_size,
                                       int64_t shared_limit) {
  constexpr int kCandidates[][2] = {{8, 32}, {4, 32}, {4, 16},
                                    {2, 16}, {2, 8},  {1, 8}};
  CudaLaunchPlan plan;
  for (const auto& tile : kCandidates) {
    const int64_t bytes =
        cuda_shared_elements(kernel, heads, hidden, dims, tile[0], tile[1]) *
        element_size;
    if (bytes > shared_limit) continue;
    plan.rows = tile[0];
    plan.cols = tile[1];
    // backward_value tiles key columns; the others query rows.
    plan.tiles_per_image = num_tiles(
        n, kernel == CudaKernel::kBackwardValue ? plan.cols : plan.rows);
    plan.blocks = plan.tiles_per_image * batch;
    plan.shared_bytes = bytes;
    return plan;
  }
  return plan;
}

// Whether the CUDA kernels take maps of `heads` heads, `hidden` expanded
// channels and values of `dims` channels, with `shared_limit` bytes of
// shared memory per block and accumulation in `element_size` bytes.
inline bool cuda_kernels_fit(int64_t heads, int64_t hidden, int64_t dims,
                             int64_t element_size, int64_t shared_limit) {
  if (heads > kMaxCudaHeads) return false;
  for (CudaKernel kernel : {CudaKernel::kForward, CudaKernel::kBackwardRows,
                            CudaKernel::kBackwardValue}) {
    if (plan_cuda_launch(kernel, 1, heads, hidden, 1, dims, element_size,
                         shared_limit)
            .rows == 0)
      return false;
  }
  return true;
}

}  // namespace refined_attention
}  // namespace mmscalable
