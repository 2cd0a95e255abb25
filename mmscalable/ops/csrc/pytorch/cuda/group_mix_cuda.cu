// Copyright (c) mmscalable contributors. All rights reserved.
//
// CUDA implementation of the Group-Mix depthwise conv (layouts and index
// arithmetic in common/group_mix_utils.h, shared with the CPU kernels).
//
// Forward and input gradient: one thread per output element, grid-stride
// loop, each thread reading its channel's k x k taps through tap_source /
// tap_target (zero padding outside the map). Weight gradient: one block per
// (channel, tap), reducing over streams, images and positions. Accumulation
// in float for half and bfloat16 (at::opmath_type). Indices are 64-bit.
// The speed of these kernels has not been measured yet.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "group_mix_utils.h"

namespace mmscalable {
namespace group_mix {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kReduceThreads = 256;

int64_t num_blocks_for(int64_t total) {
  // Enough blocks to fill the device; the grid-stride loops cover the rest.
  constexpr int64_t kMaxBlocks = 65535;
  return std::max<int64_t>(
      1, std::min(kMaxBlocks, (total + kThreadsPerBlock - 1) / kThreadsPerBlock));
}

struct Shape {
  int64_t batch, height, width, streams, channels;
};

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ input,
                               TokenStrides strides,
                               const scalar_t* __restrict__ weight,
                               const scalar_t* __restrict__ bias,
                               GroupTable table, Shape shape,
                               bool apply_hardswish,
                               scalar_t* __restrict__ output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = shape.streams * shape.batch * shape.channels *
                        shape.height * shape.width;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       index < total; index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t w = index % shape.width;
    const int64_t h = (index / shape.width) % shape.height;
    const int64_t c = (index / (shape.width * shape.height)) % shape.channels;
    const int64_t plane = index / (shape.width * shape.height * shape.channels);
    const int64_t b = plane % shape.batch;
    const int64_t s = plane / shape.batch;
    const int group = group_of(table, c);
    const int k = table.kernel_size[group];
    const int radius = k / 2;
    const scalar_t* taps = weight + weight_begin(table, group, c);
    acc_t sum = acc_t(0);
    for (int i = 0; i < k; ++i) {
      const int64_t src_h = tap_source(h, i, radius, shape.height);
      if (src_h < 0) continue;
      for (int j = 0; j < k; ++j) {
        const int64_t src_w = tap_source(w, j, radius, shape.width);
        if (src_w < 0) continue;
        sum += static_cast<acc_t>(taps[i * k + j]) *
               static_cast<acc_t>(
                   input[token_offset(strides, b, src_h, src_w, s, c)]);
      }
    }
    const acc_t channel_bias =
        bias == nullptr ? acc_t(0) : static_cast<acc_t>(bias[c]);
    output[index] =
        static_cast<scalar_t>(epilogue(sum, channel_bias, apply_hardswish));
  }
}

// grad_input (B, H, W, S, C) contiguous, one thread per element.
template <typename scalar_t>
__global__ void input_grad_kernel(const scalar_t* __restrict__ grad_output,
                                  const scalar_t* __restrict__ weight,
                                  GroupTable table, Shape shape,
                                  scalar_t* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = shape.batch * shape.height * shape.width *
                        shape.streams * shape.channels;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       index < total; index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = index % shape.channels;
    const int64_t s = (index / shape.channels) % shape.streams;
    const int64_t w = (index / (shape.channels * shape.streams)) % shape.width;
    const int64_t h =
        (index / (shape.channels * shape.streams * shape.width)) % shape.height;
    const int64_t b = index / (shape.channels * shape.streams * shape.width *
                               shape.height);
    const int group = group_of(table, c);
    const int k = table.kernel_size[group];
    const int radius = k / 2;
    const scalar_t* taps = weight + weight_begin(table, group, c);
    const int64_t plane = s * shape.batch + b;
    acc_t sum = acc_t(0);
    for (int i = 0; i < k; ++i) {
      const int64_t dst_h = tap_target(h, i, radius, shape.height);
      if (dst_h < 0) continue;
      for (int j = 0; j < k; ++j) {
        const int64_t dst_w = tap_target(w, j, radius, shape.width);
        if (dst_w < 0) continue;
        sum += static_cast<acc_t>(taps[i * k + j]) *
               static_cast<acc_t>(grad_output[map_offset(
                   plane, c, dst_h, dst_w, shape.channels, shape.height,
                   shape.width)]);
      }
    }
    grad_input[index] = static_cast<scalar_t>(sum);
  }
}

// One block per packed weight (channel c, tap i * k + j): the sum over
// streams, images and output positions of grad_output * shifted input.
template <typename scalar_t>
__global__ void weight_grad_kernel(const scalar_t* __restrict__ grad_output,
                                   const scalar_t* __restrict__ input,
                                   TokenStrides strides, GroupTable table,
                                   Shape shape, int64_t num_weights,
                                   scalar_t* __restrict__ grad_weight) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t partial[kReduceThreads];
  for (int64_t weight_index = blockIdx.x; weight_index < num_weights;
       weight_index += gridDim.x) {
    // The group, channel and tap of this weight.
    int group = 0;
    while (group + 1 < table.num_groups &&
           weight_index >= table.weight_begin[group + 1])
      ++group;
    const int k = table.kernel_size[group];
    const int radius = k / 2;
    const int64_t offset = weight_index - table.weight_begin[group];
    const int64_t c = group_begin(table, group) + offset / (k * k);
    const int tap = static_cast<int>(offset % (k * k));
    const int i = tap / k, j = tap % k;
    const int64_t positions =
        shape.streams * shape.batch * shape.height * shape.width;
    acc_t sum = acc_t(0);
    for (int64_t p = threadIdx.x; p < positions; p += blockDim.x) {
      const int64_t w = p % shape.width;
      const int64_t h = (p / shape.width) % shape.height;
      const int64_t plane = p / (shape.width * shape.height);
      const int64_t src_h = tap_source(h, i, radius, shape.height);
      const int64_t src_w = tap_source(w, j, radius, shape.width);
      if (src_h < 0 || src_w < 0) continue;
      const int64_t b = plane % shape.batch;
      const int64_t s = plane / shape.batch;
      sum += static_cast<acc_t>(grad_output[map_offset(
                 plane, c, h, w, shape.channels, shape.height,
                 shape.width)]) *
             static_cast<acc_t>(
                 input[token_offset(strides, b, src_h, src_w, s, c)]);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride)
        partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0)
      grad_weight[weight_index] = static_cast<scalar_t>(partial[0]);
    __syncthreads();
  }
}

Shape shape_of(const at::Tensor& input) {
  return {input.size(0), input.size(1), input.size(2), input.size(3),
          input.size(4)};
}

TokenStrides strides_of(const at::Tensor& tokens) {
  return {tokens.stride(0), tokens.stride(1), tokens.stride(2),
          tokens.stride(3), tokens.stride(4)};
}

}  // namespace

void forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                  const at::Tensor& bias, const GroupTable& table,
                  bool apply_hardswish, at::Tensor& output) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t total = output.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "group_mix_forward_cuda",
      [&] {
        forward_kernel<scalar_t>
            <<<num_blocks_for(total), kThreadsPerBlock, 0, stream>>>(
                input.const_data_ptr<scalar_t>(), strides_of(input),
                weight.const_data_ptr<scalar_t>(),
                bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
                table, shape_of(input), apply_hardswish,
                output.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

void backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                   const at::Tensor& weight, const GroupTable& table,
                   at::Tensor& grad_input, at::Tensor& grad_weight) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "group_mix_backward_cuda",
      [&] {
        if (grad_input.defined()) {
          input_grad_kernel<scalar_t>
              <<<num_blocks_for(grad_input.numel()), kThreadsPerBlock, 0,
                 stream>>>(grad_output.const_data_ptr<scalar_t>(),
                           weight.const_data_ptr<scalar_t>(), table,
                           shape_of(input),
                           grad_input.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        if (grad_weight.defined()) {
          const int64_t num_weights = weight.numel();
          const int64_t blocks = std::min<int64_t>(num_weights, 65535);
          weight_grad_kernel<scalar_t>
              <<<blocks, kReduceThreads, 0, stream>>>(
                  grad_output.const_data_ptr<scalar_t>(),
                  input.const_data_ptr<scalar_t>(), strides_of(input), table,
                  shape_of(input), num_weights,
                  grad_weight.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
}

}  // namespace group_mix
}  // namespace mmscalable
