// Copyright (c) mmscalable contributors. All rights reserved.
//
// Front end of the Group-Mix depthwise conv: the schema of the ops in the
// `mmscalable` torch.library namespace, argument checks, allocation of the
// results and dispatch (by the dispatcher) to the CPU and CUDA kernels.
// Layouts are described in common/group_mix_utils.h. Problems raise
// RuntimeError in Python (plain TORCH_CHECK; see window_partition.cpp).
//
//   group_mix_dwconv(input, weight, bias, kernel_sizes, group_channels,
//                    hardswish) -> output
//   group_mix_dwconv_backward(grad_output, input, weight, kernel_sizes,
//                             group_channels, output_mask)
//       -> (grad_input, grad_weight)
//
// Autograd and the fake (meta) implementations are registered from Python
// (mmscalable/ops/group_mix.py). A gradient left out by `output_mask` is
// returned as an empty tensor.
#include <torch/extension.h>
#include <torch/library.h>

#include <array>

#include "group_mix_utils.h"

namespace mmscalable {
namespace group_mix {
namespace {

int64_t packed_weight_size(const GroupTable& table) {
  int64_t size = 0;
  for (int g = 0; g < table.num_groups; ++g)
    size += (table.channel_end[g] - group_begin(table, g)) *
            table.kernel_size[g] * table.kernel_size[g];
  return size;
}

void check_dtype(const at::Tensor& tensor, const char* name) {
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              "group_mix_dwconv: ", name,
              " must be float32, float64, float16 or bfloat16, got ", dtype);
}

void check_like(const at::Tensor& tensor, const at::Tensor& input,
                const char* name) {
  TORCH_CHECK(tensor.scalar_type() == input.scalar_type(),
              "group_mix_dwconv: ", name, " has dtype ", tensor.scalar_type(),
              " but the input has ", input.scalar_type());
  TORCH_CHECK(tensor.device() == input.device(), "group_mix_dwconv: ", name,
              " is on ", tensor.device(), " but the input is on ",
              input.device());
}

GroupTable check_inputs(const at::Tensor& input, const at::Tensor& weight,
                        c10::IntArrayRef kernel_sizes,
                        c10::IntArrayRef group_channels) {
  TORCH_CHECK(input.dim() == 5,
              "group_mix_dwconv expects a 5-D (B, H, W, S, C) input, got a "
              "tensor of rank ",
              input.dim(), " with shape ", input.sizes());
  check_dtype(input, "input");
  check_like(weight, input, "weight");
  const GroupTable table = make_table(kernel_sizes, group_channels,
                                      input.size(4));
  TORCH_CHECK(weight.dim() == 1 && weight.numel() == packed_weight_size(table),
              "group_mix_dwconv: weight must be the packed kernels, 1-D with "
              "sum(group_channels * kernel_size ** 2) = ",
              packed_weight_size(table), " values, got shape ",
              weight.sizes());
  return table;
}

}  // namespace

at::Tensor dwconv_forward(const at::Tensor& input, const at::Tensor& weight,
                          const c10::optional<at::Tensor>& bias,
                          c10::IntArrayRef kernel_sizes,
                          c10::IntArrayRef group_channels, bool hardswish) {
  const GroupTable table =
      check_inputs(input, weight, kernel_sizes, group_channels);
  at::Tensor bias_contig;
  if (bias.has_value() && bias->defined()) {
    check_like(*bias, input, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == input.size(4),
                "group_mix_dwconv: bias must have one value per channel (",
                input.size(4), "), got shape ", bias->sizes());
    bias_contig = bias->contiguous();
  }
  const int64_t batch = input.size(0), height = input.size(1),
                width = input.size(2), streams = input.size(3),
                channels = input.size(4);
  at::Tensor output = at::empty({streams * batch, channels, height, width},
                                input.options().memory_format(
                                    at::MemoryFormat::Contiguous));
  if (output.numel() == 0) return output;
  const at::Tensor weight_contig = weight.contiguous();
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    forward_cuda(input, weight_contig, bias_contig, table, hardswish, output);
#endif
  } else {
    forward_cpu(input, weight_contig, bias_contig, table, hardswish, output);
  }
  return output;
}

std::tuple<at::Tensor, at::Tensor> dwconv_backward(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, c10::IntArrayRef kernel_sizes,
    c10::IntArrayRef group_channels, std::array<bool, 2> output_mask) {
  const GroupTable table =
      check_inputs(input, weight, kernel_sizes, group_channels);
  check_like(grad_output, input, "grad_output");
  const int64_t batch = input.size(0), height = input.size(1),
                width = input.size(2), streams = input.size(3),
                channels = input.size(4);
  TORCH_CHECK(grad_output.dim() == 4 &&
                  grad_output.size(0) == streams * batch &&
                  grad_output.size(1) == channels &&
                  grad_output.size(2) == height &&
                  grad_output.size(3) == width,
              "group_mix_dwconv_backward: grad_output must have the "
              "output's shape (S * B, C, H, W) = (",
              streams * batch, ", ", channels, ", ", height, ", ", width,
              "), got ", grad_output.sizes());
  const auto options =
      input.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor grad_input = output_mask[0] ? at::empty(input.sizes(), options)
                                         : at::empty({0}, options);
  at::Tensor grad_weight = output_mask[1] ? at::empty_like(weight, options)
                                          : at::empty({0}, options);
  if (input.numel() == 0) {
    // No position contributes: the weights' gradient is zero, not whatever
    // the allocation held.
    if (output_mask[1]) grad_weight.zero_();
    return {grad_input, grad_weight};
  }
  const at::Tensor grad_contig = grad_output.contiguous();
  const at::Tensor weight_contig = weight.contiguous();
  at::Tensor grad_input_arg = output_mask[0] ? grad_input : at::Tensor();
  at::Tensor grad_weight_arg = output_mask[1] ? grad_weight : at::Tensor();
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    backward_cuda(grad_contig, input, weight_contig, table, grad_input_arg,
                  grad_weight_arg);
#endif
  } else {
    backward_cpu(grad_contig, input, weight_contig, table, grad_input_arg,
                 grad_weight_arg);
  }
  return {grad_input, grad_weight};
}

}  // namespace group_mix
}  // namespace mmscalable

TORCH_LIBRARY_FRAGMENT(mmscalable, m) {
  m.def(
      "group_mix_dwconv(Tensor input, Tensor weight, Tensor? bias, "
      "int[] kernel_sizes, int[] group_channels, bool hardswish=False) "
      "-> Tensor");
  m.def(
      "group_mix_dwconv_backward(Tensor grad_output, Tensor input, "
      "Tensor weight, int[] kernel_sizes, int[] group_channels, "
      "bool[2] output_mask) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmscalable, CPU, m) {
  m.impl("group_mix_dwconv", &mmscalable::group_mix::dwconv_forward);
  m.impl("group_mix_dwconv_backward",
         &mmscalable::group_mix::dwconv_backward);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmscalable, CUDA, m) {
  m.impl("group_mix_dwconv", &mmscalable::group_mix::dwconv_forward);
  m.impl("group_mix_dwconv_backward",
         &mmscalable::group_mix::dwconv_backward);
}
#endif
