// Copyright (c) mmscalable contributors. All rights reserved.
//
// CUDA kernels of window partition / reverse (layouts in
// common/window_partition_utils.h), launched by
// pytorch/cuda/window_partition_cuda.cu and, in the tests, by an emulation
// of CUDA's execution model on the CPU.
//
// Both ops are pure gathers, so the kernels move opaque "units" of 2 to 16
// bytes rather than typed elements: when a token's channels (C * itemsize
// bytes) and both buffers are 16-byte aligned, each thread moves a uint4
// (8 halfs or 4 floats) per access, which keeps the copy near memory
// bandwidth for every dtype. Zero padding is an all-zero unit, which is +0.0
// in every supported floating type.
//
// One thread per output unit, grid-stride loop; 32-bit index arithmetic
// when the tensors are small enough (the common case), 64-bit otherwise.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "device_runtime.cuh"

namespace mmscalable {
namespace window_ops {

constexpr int kWindowThreads = 256;

// Shape of one call, in units rather than elements along the channels.
template <typename index_t>
struct WindowGeometry {
  index_t height;
  index_t width;
  index_t units_per_token;  // C * itemsize / sizeof(unit)
  index_t window_size;
  index_t num_win_h;
  index_t num_win_w;
};

template <typename unit_t, typename index_t>
__global__ void window_partition_kernel(const unit_t* __restrict__ input,
                                        unit_t* __restrict__ windows,
                                        index_t total_units,
                                        WindowGeometry<index_t> g) {
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t idx =
           static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total_units; idx += stride) {
    // idx enumerates windows as (b, win_row, win_col, ty, tx, unit).
    const index_t unit = idx % g.units_per_token;
    index_t rest = idx / g.units_per_token;
    const index_t tx = rest % g.window_size;
    rest /= g.window_size;
    const index_t ty = rest % g.window_size;
    rest /= g.window_size;
    const index_t win_col = rest % g.num_win_w;
    rest /= g.num_win_w;
    const index_t win_row = rest % g.num_win_h;
    const index_t b = rest / g.num_win_h;

    const index_t h = win_row * g.window_size + ty;
    const index_t w = win_col * g.window_size + tx;
    unit_t value{};  // value-initialised: all bytes zero
    if (h < g.height && w < g.width) {
      value = input[((b * g.height + h) * g.width + w) * g.units_per_token +
                    unit];
    }
    windows[idx] = value;
  }
}

template <typename unit_t, typename index_t>
__global__ void window_reverse_kernel(const unit_t* __restrict__ windows,
                                      unit_t* __restrict__ output,
                                      index_t total_units,
                                      WindowGeometry<index_t> g) {
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t idx =
           static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total_units; idx += stride) {
    // idx enumerates the map as (b, h, w, unit).
    const index_t unit = idx % g.units_per_token;
    index_t rest = idx / g.units_per_token;
    const index_t w = rest % g.width;
    rest /= g.width;
    const index_t h = rest % g.height;
    const index_t b = rest / g.height;

    const index_t win = (b * g.num_win_h + h / g.window_size) * g.num_win_w +
                        w / g.window_size;
    const index_t token =
        (h % g.window_size) * g.window_size + w % g.window_size;
    output[idx] =
        windows[(win * g.window_size * g.window_size + token) *
                    g.units_per_token +
                unit];
  }
}

// Widest unit (16, 8, 4 bytes or the element itself) that divides a token's
// channel bytes and the alignment of both buffers.
inline int64_t pick_unit_bytes(int64_t element_bytes, int64_t token_bytes,
                               const void* src, const void* dst) {
  const auto addresses = reinterpret_cast<std::uintptr_t>(src) |
                         reinterpret_cast<std::uintptr_t>(dst);
  for (int64_t unit_bytes : {16, 8, 4}) {
    if (unit_bytes > element_bytes && token_bytes % unit_bytes == 0 &&
        addresses % unit_bytes == 0) {
      return unit_bytes;
    }
  }
  return element_bytes;
}

// Blocks of a launch: enough to fill every SM several times over; the
// grid-stride loop covers the rest, so the grid never exceeds what a launch
// accepts.
inline int64_t window_blocks(int64_t total_units, int64_t sm_count) {
  const int64_t needed = (total_units + kWindowThreads - 1) / kWindowThreads;
  return std::max<int64_t>(1, std::min<int64_t>(needed, sm_count * 32));
}

// `g` in the index type a launch uses.
template <typename index_t>
WindowGeometry<index_t> geometry_as(const WindowGeometry<int64_t>& g) {
  return {static_cast<index_t>(g.height),
          static_cast<index_t>(g.width),
          static_cast<index_t>(g.units_per_token),
          static_cast<index_t>(g.window_size),
          static_cast<index_t>(g.num_win_h),
          static_cast<index_t>(g.num_win_w)};
}

// Whether 32-bit index arithmetic covers a launch: the loop counter runs up
// to total_units (the destination's) plus one grid stride, and the kernels
// index the source too, which is the larger buffer for a reverse (its
// windows hold the padding).
inline bool fits_int32_index(int64_t total_units, int64_t src_units,
                             int64_t blocks) {
  const int64_t largest =
      std::max(total_units + blocks * kWindowThreads, src_units);
  return largest <= std::numeric_limits<int32_t>::max();
}

}  // namespace window_ops
}  // namespace mmscalable
