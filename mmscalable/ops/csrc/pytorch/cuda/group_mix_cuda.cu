// Copyright (c) mmscalable contributors. All rights reserved.
//
// Launches of the Group-Mix depthwise conv's CUDA kernels (bodies in
// common/cuda/group_mix_cuda_kernel.cuh). Every kernel stays within the
// 48 KB of shared memory a block gets without opting in.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/group_mix_cuda_kernel.cuh"

namespace mmscalable {
namespace group_mix {
namespace {

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
  const Shape shape = shape_of(input);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "group_mix_forward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const Tiling t =
            plan_tiling(shape, table, sizeof(acc_t), kDefaultSharedBytes);
        forward_kernel<scalar_t>
            <<<static_cast<unsigned>(tile_blocks(t)), kThreads,
               forward_shared_elements(t) * sizeof(acc_t), stream>>>(
                input.const_data_ptr<scalar_t>(), strides_of(input),
                weight.const_data_ptr<scalar_t>(),
                bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
                table, shape, t, apply_hardswish,
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
        using acc_t = at::opmath_type<scalar_t>;
        const Shape shape = shape_of(input);
        const Tiling t =
            plan_tiling(shape, table, sizeof(acc_t), kDefaultSharedBytes);
        if (grad_input.defined()) {
          input_grad_kernel<scalar_t>
              <<<static_cast<unsigned>(tile_blocks(t)), kThreads,
                 input_grad_shared_elements(t) * sizeof(acc_t), stream>>>(
                  grad_output.const_data_ptr<scalar_t>(),
                  weight.const_data_ptr<scalar_t>(), table, shape, t,
                  grad_input.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        if (grad_weight.defined()) {
          const int64_t num_weights = weight.numel();
          const int64_t slots = weight_grad_slots(t);
          // One partial sum per block and weight; summed in slot order.
          at::Tensor partials = at::empty(
              {slots * num_weights},
              input.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
          weight_grad_kernel<scalar_t>
              <<<static_cast<unsigned>(t.channel_tiles * slots), kThreads,
                 weight_grad_shared_elements(t) * sizeof(acc_t), stream>>>(
                  grad_output.const_data_ptr<scalar_t>(),
                  input.const_data_ptr<scalar_t>(), strides_of(input), table,
                  shape, t, slots, num_weights,
                  partials.mutable_data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          reduce_partials_kernel<scalar_t>
              <<<static_cast<unsigned>(reduce_blocks(num_weights)), kThreads,
                 0, stream>>>(partials.const_data_ptr<acc_t>(), slots,
                              num_weights,
                              grad_weight.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
}

}  // namespace group_mix
}  // namespace mmscalable
