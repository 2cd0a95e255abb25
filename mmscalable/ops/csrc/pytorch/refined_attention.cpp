// Copyright (c) mmscalable contributors. All rights reserved.
//
// Front end of the fused refined attention: the ops' schemas, argument
// checks and registration for the CPU and CUDA kernels. The computation and
// the layouts are described in common/refined_attention_utils.h.
//
// Registered through torch.library as mmscalable::refined_attention_forward
// and mmscalable::refined_attention_backward, so that torch.compile and
// torch.export see one op (their fake implementations are registered in
// mmscalable/ops/refined_attention.py). Problems raise RuntimeError with a
// message naming them (plain TORCH_CHECK, see window_partition.cpp).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "refined_attention_utils.h"

namespace mmscalable {

at::Tensor refined_attention_forward_cpu(
    const at::Tensor& attn, const at::Tensor& value, const at::Tensor& w_expand,
    const at::Tensor& b_expand, const at::Tensor& w_depthwise,
    const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
    const at::Tensor& b_reduce, const at::Tensor& alpha);

std::vector<at::Tensor> refined_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& attn, const at::Tensor& value,
    const at::Tensor& w_expand, const at::Tensor& b_expand,
    const at::Tensor& w_depthwise, const at::Tensor& b_depthwise,
    const at::Tensor& w_reduce, const at::Tensor& b_reduce,
    const at::Tensor& alpha);

#ifdef WITH_CUDA
at::Tensor refined_attention_forward_cuda(
    const at::Tensor& attn, const at::Tensor& value, const at::Tensor& w_expand,
    const at::Tensor& b_expand, const at::Tensor& w_depthwise,
    const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
    const at::Tensor& b_reduce, const at::Tensor& alpha);

std::vector<at::Tensor> refined_attention_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& attn, const at::Tensor& value,
    const at::Tensor& w_expand, const at::Tensor& b_expand,
    const at::Tensor& w_depthwise, const at::Tensor& b_depthwise,
    const at::Tensor& w_reduce, const at::Tensor& b_reduce,
    const at::Tensor& alpha);
#endif

namespace {

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                         at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                         at::Tensor>;

void check_param(const at::Tensor& param, const char* name,
                 at::IntArrayRef shape, at::ScalarType dtype,
                 const at::Tensor& attn) {
  TORCH_CHECK(param.sizes() == shape, "refined_attention: ", name,
              " must have shape ", shape, ", got ", param.sizes());
  TORCH_CHECK(param.scalar_type() == dtype, "refined_attention: ", name,
              " must be ", dtype, " for ", attn.scalar_type(),
              " maps (the folded parameters are kept in the accumulation "
              "type), got ",
              param.scalar_type());
  TORCH_CHECK(param.device() == attn.device(), "refined_attention: ", name,
              " is on ", param.device(), " but the maps are on ",
              attn.device());
}

// Checks the arguments and returns them contiguous, in the same order.
std::vector<at::Tensor> checked(const at::Tensor& attn, const at::Tensor& value,
                                const at::Tensor& w_expand,
                                const at::Tensor& b_expand,
                                const at::Tensor& w_depthwise,
                                const at::Tensor& b_depthwise,
                                const at::Tensor& w_reduce,
                                const at::Tensor& b_reduce,
                                const at::Tensor& alpha) {
  TORCH_CHECK(attn.dim() == 4 && attn.size(2) == attn.size(3),
              "refined_attention: attn must be (B, heads, N, N) maps, got "
              "shape ",
              attn.sizes());
  TORCH_CHECK(value.dim() == 4 && value.size(0) == attn.size(0) &&
                  value.size(1) == attn.size(1) &&
                  value.size(2) == attn.size(2),
              "refined_attention: value must be (B, heads, N, d) = (",
              attn.size(0), ", ", attn.size(1), ", ", attn.size(2),
              ", d) for maps of shape ", attn.sizes(), ", got ",
              value.sizes());
  const auto dtype = attn.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              "refined_attention: attn must be float32, float64, float16 or "
              "bfloat16, got ",
              dtype);
  TORCH_CHECK(value.scalar_type() == dtype,
              "refined_attention: value must have the maps' dtype ", dtype,
              ", got ", value.scalar_type());
  TORCH_CHECK(value.device() == attn.device(),
              "refined_attention: value is on ", value.device(),
              " but the maps are on ", attn.device());
  const int64_t heads = attn.size(1), hidden = w_expand.size(0);
  const auto acc = dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(w_expand.dim() == 2, "refined_attention: w_expand must be "
              "(E, heads), got shape ", w_expand.sizes());
  check_param(w_expand, "w_expand", {hidden, heads}, acc, attn);
  check_param(b_expand, "b_expand", {hidden}, acc, attn);
  check_param(w_depthwise, "w_depthwise", {hidden, 3, 3}, acc, attn);
  check_param(b_depthwise, "b_depthwise", {hidden}, acc, attn);
  check_param(w_reduce, "w_reduce", {heads, hidden}, acc, attn);
  check_param(b_reduce, "b_reduce", {heads}, acc, attn);
  check_param(alpha, "alpha", {heads}, acc, attn);
  return {attn.contiguous(),        value.contiguous(),
          w_expand.contiguous(),    b_expand.contiguous(),
          w_depthwise.contiguous(), b_depthwise.contiguous(),
          w_reduce.contiguous(),    b_reduce.contiguous(),
          alpha.contiguous()};
}

template <typename Kernel>
at::Tensor forward_with(Kernel kernel, const at::Tensor& attn,
                        const at::Tensor& value, const at::Tensor& w_expand,
                        const at::Tensor& b_expand,
                        const at::Tensor& w_depthwise,
                        const at::Tensor& b_depthwise,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce,
                        const at::Tensor& alpha) {
  const auto a = checked(attn, value, w_expand, b_expand, w_depthwise,
                         b_depthwise, w_reduce, b_reduce, alpha);
  return kernel(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
}

template <typename Kernel>
Grads backward_with(Kernel kernel, const at::Tensor& grad_out,
                    const at::Tensor& attn, const at::Tensor& value,
                    const at::Tensor& w_expand, const at::Tensor& b_expand,
                    const at::Tensor& w_depthwise,
                    const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
                    const at::Tensor& b_reduce, const at::Tensor& alpha) {
  const auto a = checked(attn, value, w_expand, b_expand, w_depthwise,
                         b_depthwise, w_reduce, b_reduce, alpha);
  TORCH_CHECK(grad_out.sizes() == value.sizes(),
              "refined_attention_backward: grad_out must have the output's "
              "shape ",
              value.sizes(), ", got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == value.scalar_type(),
              "refined_attention_backward: grad_out must have the output's "
              "dtype ",
              value.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK(grad_out.device() == attn.device(),
              "refined_attention_backward: grad_out is on ", grad_out.device(),
              " but the maps are on ", attn.device());
  const auto g = kernel(grad_out.contiguous(), a[0], a[1], a[2], a[3], a[4],
                        a[5], a[6], a[7], a[8]);
  return {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8]};
}

at::Tensor forward_cpu(const at::Tensor& attn, const at::Tensor& value,
                       const at::Tensor& w_expand, const at::Tensor& b_expand,
                       const at::Tensor& w_depthwise,
                       const at::Tensor& b_depthwise,
                       const at::Tensor& w_reduce, const at::Tensor& b_reduce,
                       const at::Tensor& alpha) {
  return forward_with(refined_attention_forward_cpu, attn, value, w_expand,
                      b_expand, w_depthwise, b_depthwise, w_reduce, b_reduce,
                      alpha);
}

Grads backward_cpu(const at::Tensor& grad_out, const at::Tensor& attn,
                   const at::Tensor& value, const at::Tensor& w_expand,
                   const at::Tensor& b_expand, const at::Tensor& w_depthwise,
                   const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
                   const at::Tensor& b_reduce, const at::Tensor& alpha) {
  return backward_with(refined_attention_backward_cpu, grad_out, attn, value,
                       w_expand, b_expand, w_depthwise, b_depthwise, w_reduce,
                       b_reduce, alpha);
}

#ifdef WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& attn, const at::Tensor& value,
                        const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_depthwise,
                        const at::Tensor& b_depthwise,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce,
                        const at::Tensor& alpha) {
  return forward_with(refined_attention_forward_cuda, attn, value, w_expand,
                      b_expand, w_depthwise, b_depthwise, w_reduce, b_reduce,
                      alpha);
}

Grads backward_cuda(const at::Tensor& grad_out, const at::Tensor& attn,
                    const at::Tensor& value, const at::Tensor& w_expand,
                    const at::Tensor& b_expand, const at::Tensor& w_depthwise,
                    const at::Tensor& b_depthwise, const at::Tensor& w_reduce,
                    const at::Tensor& b_reduce, const at::Tensor& alpha) {
  return backward_with(refined_attention_backward_cuda, grad_out, attn, value,
                       w_expand, b_expand, w_depthwise, b_depthwise, w_reduce,
                       b_reduce, alpha);
}
#endif

// Whether the CUDA kernels take maps of `heads` heads, `hidden` expanded
// channels, values of `dims` channels, accumulation in `element_size` bytes
// and `shared_memory_bytes` of shared memory per block (the device's
// opt-in maximum): the launch planning the kernels use, for the Python side
// to route maps the kernels cannot take to another path.
bool cuda_kernels_fit(int64_t heads, int64_t hidden, int64_t dims,
                      int64_t element_size, int64_t shared_memory_bytes) {
  return refined_attention::cuda_kernels_fit(heads, hidden, dims,
                                             element_size, shared_memory_bytes);
}

}  // namespace

}  // namespace mmscalable

TORCH_LIBRARY_FRAGMENT(mmscalable, m) {
  m.def(
      "refined_attention_cuda_kernels_fit(int heads, int hidden, int dims, "
      "int element_size, int shared_memory_bytes) -> bool",
      &mmscalable::cuda_kernels_fit);
  m.def(
      "refined_attention_forward(Tensor attn, Tensor value, Tensor w_expand, "
      "Tensor b_expand, Tensor w_depthwise, Tensor b_depthwise, "
      "Tensor w_reduce, Tensor b_reduce, Tensor alpha) -> Tensor");
  m.def(
      "refined_attention_backward(Tensor grad_out, Tensor attn, "
      "Tensor value, Tensor w_expand, Tensor b_expand, Tensor w_depthwise, "
      "Tensor b_depthwise, Tensor w_reduce, Tensor b_reduce, Tensor alpha) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, "
      "Tensor)");
}

TORCH_LIBRARY_IMPL(mmscalable, CPU, m) {
  m.impl("refined_attention_forward", &mmscalable::forward_cpu);
  m.impl("refined_attention_backward", &mmscalable::backward_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmscalable, CUDA, m) {
  m.impl("refined_attention_forward", &mmscalable::forward_cuda);
  m.impl("refined_attention_backward", &mmscalable::backward_cuda);
}
#endif
