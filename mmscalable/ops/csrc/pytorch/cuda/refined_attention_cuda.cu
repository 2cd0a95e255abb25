// Copyright (c) mmscalable contributors. All rights reserved.
//
// Launches of the fused refined attention's CUDA kernels (bodies in
// common/cuda/refined_attention_cuda_kernel.cuh, launch planning in
// common/refined_attention_utils.h).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "cuda/refined_attention_cuda_kernel.cuh"

namespace mmscalable {
namespace {

namespace ra = refined_attention;

constexpr int kMaxDevices = 64;

// Lets `kernel` use up to the device's opt-in shared memory per block, once
// per device: setting the attribute per call could race with another host
// thread's launch of a different size.
template <typename Kernel>
void allow_shared_memory(Kernel kernel) {
  static std::once_flag flags[kMaxDevices];
  const int device = at::cuda::current_device();
  TORCH_CHECK(device < kMaxDevices, "refined_attention (CUDA): device index ",
              device, " is beyond the ", kMaxDevices, " this build supports");
  std::call_once(flags[device], [&] {
    const auto* props = at::cuda::getCurrentDeviceProperties();
    C10_CUDA_CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(props->sharedMemPerBlockOptin)));
  });
}

// The plan of `kernel` on the current device; raises when nothing fits
// (the Python side routes such maps elsewhere, see cuda_kernels_fit).
ra::CudaLaunchPlan plan_on_device(ra::CudaKernel kernel,
                                  const at::Tensor& attn,
                                  const at::Tensor& value,
                                  const at::Tensor& w_expand,
                                  int64_t element_size, const char* what) {
  const int64_t heads = attn.size(1), hidden = w_expand.size(0);
  TORCH_CHECK(heads <= ra::kMaxCudaHeads,
              "refined_attention (CUDA): at most ", ra::kMaxCudaHeads,
              " heads, got ", heads);
  const int64_t limit =
      at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin;
  const auto plan =
      ra::plan_cuda_launch(kernel, attn.size(0), heads, hidden, attn.size(2),
                           value.size(3), element_size, limit);
  TORCH_CHECK(plan.rows > 0, "refined_attention (CUDA): ", heads,
              " heads and ", hidden, " hidden channels need more shared "
              "memory per block than the device has (", limit,
              " bytes) for the ", what, " kernel");
  TORCH_CHECK(plan.blocks <= std::numeric_limits<int32_t>::max(),
              "refined_attention (CUDA): ", plan.blocks,
              " blocks exceed a launch's grid; split the batch");
  return plan;
}

ra::Shape shape_of(const at::Tensor& attn, const at::Tensor& value,
                   const at::Tensor& w_expand, const ra::CudaLaunchPlan& p) {
  return {attn.size(1), w_expand.size(0), attn.size(2), value.size(3),
          p.rows,       p.cols,           p.tiles_per_image};
}

}  // namespace

at::Tensor refined_attention_forward_cuda(
    const at::Tensor& attn, const at::Tensor& value, const at::Tensor& w_expand,
    const at::Tensor& b_expand, const at::Tensor& w_depthwise,
    const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
    const at::Tensor& b_reduce, const at::Tensor& alpha) {
  const c10::cuda::CUDAGuard device_guard(attn.device());
  at::Tensor out = at::empty(value.sizes(), value.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, attn.scalar_type(),
      "refined_attention_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto plan =
            plan_on_device(ra::CudaKernel::kForward, attn, value, w_expand,
                           sizeof(acc_t), "forward");
        const ra::Shape s = shape_of(attn, value, w_expand, plan);
        allow_shared_memory(ra::forward_kernel<scalar_t>);
        ra::forward_kernel<scalar_t>
            <<<static_cast<unsigned>(plan.blocks), ra::kCudaThreads,
               plan.shared_bytes, at::cuda::getCurrentCUDAStream()>>>(
                attn.const_data_ptr<scalar_t>(),
                value.const_data_ptr<scalar_t>(),
                ra::folded_refinement<acc_t>(w_expand, b_expand,
                                             w_depthwise, b_depthwise,
                                             w_reduce, b_reduce, alpha),
                s, out.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

std::vector<at::Tensor> refined_attention_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& attn, const at::Tensor& value,
    const at::Tensor& w_expand, const at::Tensor& b_expand,
    const at::Tensor& w_depthwise, const at::Tensor& b_depthwise,
    const at::Tensor& w_reduce, const at::Tensor& b_reduce,
    const at::Tensor& alpha) {
  const c10::cuda::CUDAGuard device_guard(attn.device());
  // The parameters' gradients are sums of float atomics, whose order varies.
  at::globalContext().alertNotDeterministic("refined_attention_backward_cuda");
  at::Tensor grad_attn = at::empty(attn.sizes(), attn.options());
  at::Tensor grad_value = at::empty(value.sizes(), value.options());
  std::vector<at::Tensor> param_grads;
  for (const auto* param : {&w_expand, &b_expand, &w_depthwise, &b_depthwise,
                            &w_reduce, &b_reduce, &alpha}) {
    param_grads.push_back(at::zeros(param->sizes(), param->options()));
  }
  if (attn.numel() > 0 && value.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, attn.scalar_type(),
        "refined_attention_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          const auto p = ra::folded_refinement<acc_t>(
              w_expand, b_expand, w_depthwise, b_depthwise, w_reduce, b_reduce,
              alpha);
          const auto stream = at::cuda::getCurrentCUDAStream();
          const auto rows_plan =
              plan_on_device(ra::CudaKernel::kBackwardRows, attn, value,
                             w_expand, sizeof(acc_t), "backward");
          allow_shared_memory(ra::backward_rows_kernel<scalar_t>);
          const ra::Grads<acc_t> grads{param_grads[0].mutable_data_ptr<acc_t>(),
                                   param_grads[1].mutable_data_ptr<acc_t>(),
                                   param_grads[2].mutable_data_ptr<acc_t>(),
                                   param_grads[3].mutable_data_ptr<acc_t>(),
                                   param_grads[4].mutable_data_ptr<acc_t>(),
                                   param_grads[5].mutable_data_ptr<acc_t>(),
                                   param_grads[6].mutable_data_ptr<acc_t>()};
          ra::backward_rows_kernel<scalar_t>
              <<<static_cast<unsigned>(rows_plan.blocks), ra::kCudaThreads,
                 rows_plan.shared_bytes, stream>>>(
                  attn.const_data_ptr<scalar_t>(),
                  value.const_data_ptr<scalar_t>(),
                  grad_out.const_data_ptr<scalar_t>(), p,
                  shape_of(attn, value, w_expand, rows_plan),
                  grad_attn.mutable_data_ptr<scalar_t>(), grads);
          C10_CUDA_KERNEL_LAUNCH_CHECK();

          const auto value_plan =
              plan_on_device(ra::CudaKernel::kBackwardValue, attn, value,
                             w_expand, sizeof(acc_t), "backward (values)");
          allow_shared_memory(ra::backward_value_kernel<scalar_t>);
          ra::backward_value_kernel<scalar_t>
              <<<static_cast<unsigned>(value_plan.blocks), ra::kCudaThreads,
                 value_plan.shared_bytes, stream>>>(
                  attn.const_data_ptr<scalar_t>(),
                  grad_out.const_data_ptr<scalar_t>(), p,
                  shape_of(attn, value, w_expand, value_plan),
                  grad_value.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  } else {
    grad_attn.zero_();
    grad_value.zero_();
  }
  std::vector<at::Tensor> grads{grad_attn, grad_value};
  grads.insert(grads.end(), param_grads.begin(), param_grads.end());
  return grads;
}

}  // namespace mmscalable
