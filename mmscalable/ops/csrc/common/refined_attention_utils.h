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

}  // namespace refined_attention
}  // namespace mmscalable
