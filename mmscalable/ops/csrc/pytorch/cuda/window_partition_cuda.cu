// Copyright (c) mmscalable contributors. All rights reserved.
//
// CUDA implementation of window partition / reverse.
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
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "window_partition_utils.h"

namespace mmscalable {
namespace {

constexpr int kThreadsPerBlock = 256;

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
int64_t pick_unit_bytes(int64_t element_bytes, int64_t token_bytes,
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

int64_t num_blocks_for(int64_t total_units) {
  // Enough blocks to fill every SM several times over; the grid-stride loop
  // covers the rest, so the grid never exceeds what a launch accepts.
  const int64_t sm_count =
      at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed =
      (total_units + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return std::max<int64_t>(1, std::min<int64_t>(needed, sm_count * 32));
}

enum class WindowOp { kPartition, kReverse };

template <typename unit_t, typename index_t>
void launch_with_unit(WindowOp op, const void* src, void* dst,
                      int64_t total_units,
                      const WindowGeometry<int64_t>& g64) {
  const WindowGeometry<index_t> g{
      static_cast<index_t>(g64.height),
      static_cast<index_t>(g64.width),
      static_cast<index_t>(g64.units_per_token),
      static_cast<index_t>(g64.window_size),
      static_cast<index_t>(g64.num_win_h),
      static_cast<index_t>(g64.num_win_w)};
  const auto blocks = static_cast<unsigned int>(num_blocks_for(total_units));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (op == WindowOp::kPartition) {
    window_partition_kernel<unit_t, index_t>
        <<<blocks, kThreadsPerBlock, 0, stream>>>(
            static_cast<const unit_t*>(src), static_cast<unit_t*>(dst),
            static_cast<index_t>(total_units), g);
  } else {
    window_reverse_kernel<unit_t, index_t>
        <<<blocks, kThreadsPerBlock, 0, stream>>>(
            static_cast<const unit_t*>(src), static_cast<unit_t*>(dst),
            static_cast<index_t>(total_units), g);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename unit_t>
void launch_with_index(WindowOp op, const void* src, void* dst,
                       int64_t total_units, int64_t src_units,
                       const WindowGeometry<int64_t>& g) {
  // The loop counter runs up to total_units (the destination's) plus one
  // grid stride, and the kernels index the source too, which is the larger
  // buffer for a reverse (its windows hold the padding): 32-bit arithmetic
  // only when both stay below 2^31.
  const int64_t stride = num_blocks_for(total_units) * kThreadsPerBlock;
  const int64_t largest = std::max(total_units + stride, src_units);
  if (largest <= std::numeric_limits<int32_t>::max()) {
    launch_with_unit<unit_t, int32_t>(op, src, dst, total_units, g);
  } else {
    launch_with_unit<unit_t, int64_t>(op, src, dst, total_units, g);
  }
}

// map: the (B, H, W, C) tensor (input of partition, output of reverse).
void launch_window_op(WindowOp op, const at::Tensor& src, at::Tensor& dst,
                      const at::Tensor& map, int64_t window_size) {
  const c10::cuda::CUDAGuard device_guard(src.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, src.scalar_type(), "window_op_cuda", [&] {
        const int64_t element_bytes = sizeof(scalar_t);
        const int64_t token_bytes = map.size(3) * element_bytes;
        const int64_t unit_bytes = pick_unit_bytes(
            element_bytes, token_bytes, src.const_data_ptr(), dst.data_ptr());
        const WindowGeometry<int64_t> g{
            map.size(1),
            map.size(2),
            token_bytes / unit_bytes,
            window_size,
            num_windows_along(map.size(1), window_size),
            num_windows_along(map.size(2), window_size)};
        const int64_t total_units = dst.numel() * element_bytes / unit_bytes;
        const int64_t src_units = src.numel() * element_bytes / unit_bytes;
        const void* src_ptr = src.const_data_ptr();
        void* dst_ptr = dst.data_ptr();
        switch (unit_bytes) {
          case 16:
            launch_with_index<uint4>(op, src_ptr, dst_ptr, total_units,
                                     src_units, g);
            break;
          case 8:
            launch_with_index<uint2>(op, src_ptr, dst_ptr, total_units,
                                     src_units, g);
            break;
          case 4:
            launch_with_index<uint32_t>(op, src_ptr, dst_ptr, total_units,
                                     src_units, g);
            break;
          default:  // 2-byte elements whose channels are not 4-byte aligned
            launch_with_index<uint16_t>(op, src_ptr, dst_ptr, total_units,
                                     src_units, g);
            break;
        }
      });
}

}  // namespace

void window_partition_forward_cuda(const at::Tensor& input,
                                   at::Tensor& windows, int64_t window_size) {
  launch_window_op(WindowOp::kPartition, input, windows, input, window_size);
}

void window_reverse_forward_cuda(const at::Tensor& windows, at::Tensor& output,
                                 int64_t window_size) {
  launch_window_op(WindowOp::kReverse, windows, output, output, window_size);
}

}  // namespace mmscalable
