// Copyright (c) mmscalable contributors. All rights reserved.
//
// Front end of the window partition / reverse ops: the schemas of the ops in
// the `mmscalable` torch.library namespace, argument checks, allocation of
// the results and dispatch (by the dispatcher) to the CPU and CUDA kernels.
// Layouts are described in common/window_partition_utils.h.
//
//   window_partition(input, window_size) -> windows
//   window_reverse(windows, window_size, height, width) -> output
//
// Every problem raises RuntimeError in Python (plain TORCH_CHECK): with
// torch 2.11, throwing c10::ValueError (TORCH_CHECK_VALUE) from an extension
// crashed the interpreter instead of raising ValueError. The Python wrappers
// in mmscalable/ops/window_partition.py check the same conditions first and
// raise ValueError / TypeError; they also register the fake (meta)
// implementations and the autograd formulas (each op's backward is the
// other op).
#include <torch/extension.h>
#include <torch/library.h>

#include "window_partition_utils.h"

namespace mmscalable {
namespace {

// The device kernels fill a preallocated, contiguous result.
using PartitionKernel = void (*)(const at::Tensor&, at::Tensor&, int64_t);

void check_window_size(int64_t window_size) {
  TORCH_CHECK(window_size >= 1, "window_size must be >= 1, got ",
              window_size);
}

void check_floating_dtype(const at::Tensor& tensor, const char* name) {
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              name, " must be float32, float64, float16 or bfloat16, got ",
              dtype);
}

// (B, H, W, C) -> (B * nH * nW, ws * ws, C), zero-padding bottom/right.
at::Tensor partition_with(PartitionKernel kernel, const at::Tensor& input,
                          int64_t window_size) {
  TORCH_CHECK(input.dim() == 4,
              "window_partition expects a 4-D (B, H, W, C) input, got a "
              "tensor of rank ",
              input.dim(), " with shape ", input.sizes());
  check_window_size(window_size);
  check_floating_dtype(input, "input");

  const int64_t batch = input.size(0);
  const int64_t num_win_h = num_windows_along(input.size(1), window_size);
  const int64_t num_win_w = num_windows_along(input.size(2), window_size);
  const int64_t channels = input.size(3);
  at::Tensor windows =
      at::empty({batch * num_win_h * num_win_w, window_size * window_size,
                 channels},
                input.options().memory_format(at::MemoryFormat::Contiguous));
  if (windows.numel() == 0) return windows;
  // The kernels index a dense (B, H, W, C) buffer; views such as slices or
  // permutes are materialised once here instead of in every kernel.
  kernel(input.contiguous(), windows, window_size);
  return windows;
}

// (B * nH * nW, ws * ws, C) -> (B, H, W, C), cropping the padding.
at::Tensor reverse_with(PartitionKernel kernel, const at::Tensor& windows,
                        int64_t window_size, int64_t height, int64_t width) {
  TORCH_CHECK(windows.dim() == 3,
              "window_reverse expects 3-D windows (B * nH * nW, "
              "window_size * window_size, C), got a tensor of rank ",
              windows.dim(), " with shape ", windows.sizes());
  check_window_size(window_size);
  TORCH_CHECK(height >= 1 && width >= 1,
              "window_reverse needs H >= 1 and W >= 1, got H=", height,
              ", W=", width);
  TORCH_CHECK(windows.size(1) == window_size * window_size,
              "window_reverse: windows.shape[1] must be window_size ** 2 = ",
              window_size * window_size, ", got ", windows.size(1));
  const int64_t windows_per_image = num_windows_along(height, window_size) *
                                    num_windows_along(width, window_size);
  TORCH_CHECK(windows.size(0) % windows_per_image == 0,
              "window_reverse: windows.shape[0] = ", windows.size(0),
              " is not a multiple of the ", windows_per_image,
              " windows that cover a ", height, "x", width,
              " map with window_size ", window_size);
  check_floating_dtype(windows, "windows");

  const int64_t batch = windows.size(0) / windows_per_image;
  const int64_t channels = windows.size(2);
  at::Tensor output =
      at::empty({batch, height, width, channels},
                windows.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0) return output;
  kernel(windows.contiguous(), output, window_size);
  return output;
}

at::Tensor window_partition_cpu(const at::Tensor& input, int64_t window_size) {
  return partition_with(window_partition_forward_cpu, input, window_size);
}

at::Tensor window_reverse_cpu(const at::Tensor& windows, int64_t window_size,
                              int64_t height, int64_t width) {
  return reverse_with(window_reverse_forward_cpu, windows, window_size, height,
                      width);
}

#ifdef WITH_CUDA
at::Tensor window_partition_cuda(const at::Tensor& input,
                                 int64_t window_size) {
  return partition_with(window_partition_forward_cuda, input, window_size);
}

at::Tensor window_reverse_cuda(const at::Tensor& windows, int64_t window_size,
                               int64_t height, int64_t width) {
  return reverse_with(window_reverse_forward_cuda, windows, window_size,
                      height, width);
}
#endif

}  // namespace
}  // namespace mmscalable

TORCH_LIBRARY_FRAGMENT(mmscalable, m) {
  m.def("window_partition(Tensor input, int window_size) -> Tensor");
  m.def(
      "window_reverse(Tensor windows, int window_size, int height, "
      "int width) -> Tensor");
}

TORCH_LIBRARY_IMPL(mmscalable, CPU, m) {
  m.impl("window_partition", &mmscalable::window_partition_cpu);
  m.impl("window_reverse", &mmscalable::window_reverse_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmscalable, CUDA, m) {
  m.impl("window_partition", &mmscalable::window_partition_cuda);
  m.impl("window_reverse", &mmscalable::window_reverse_cuda);
}
#endif
