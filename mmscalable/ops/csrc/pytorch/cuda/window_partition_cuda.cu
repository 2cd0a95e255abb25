// Copyright (c) mmscalable contributors. All rights reserved.
//
// Launches of window partition / reverse on CUDA (kernel bodies in
// common/cuda/window_partition_cuda_kernel.cuh).
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#include "cuda/window_partition_cuda_kernel.cuh"
#include "window_partition_utils.h"

namespace mmscalable {
namespace {

using namespace window_ops;

int64_t num_blocks_for(int64_t total_units) {
  return window_blocks(
      total_units,
      at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
}

enum class WindowOp { kPartition, kReverse };

template <typename unit_t, typename index_t>
void launch_with_unit(WindowOp op, const void* src, void* dst,
                      int64_t total_units,
                      const WindowGeometry<int64_t>& g64) {
  const auto g = geometry_as<index_t>(g64);
  const auto blocks = static_cast<unsigned int>(num_blocks_for(total_units));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (op == WindowOp::kPartition) {
    window_partition_kernel<unit_t, index_t>
        <<<blocks, kWindowThreads, 0, stream>>>(
            static_cast<const unit_t*>(src), static_cast<unit_t*>(dst),
            static_cast<index_t>(total_units), g);
  } else {
    window_reverse_kernel<unit_t, index_t>
        <<<blocks, kWindowThreads, 0, stream>>>(
            static_cast<const unit_t*>(src), static_cast<unit_t*>(dst),
            static_cast<index_t>(total_units), g);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename unit_t>
void launch_with_index(WindowOp op, const void* src, void* dst,
                       int64_t total_units, int64_t src_units,
                       const WindowGeometry<int64_t>& g) {
  if (fits_int32_index(total_units, src_units,
                       num_blocks_for(total_units))) {
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
