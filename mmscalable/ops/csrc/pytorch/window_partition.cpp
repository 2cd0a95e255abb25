// Copyright (c) mmscalable contributors. All rights reserved.
//
// Front end of the window partition / reverse ops: validates the arguments,
// allocates the result and dispatches to the CPU or CUDA implementation.
// Every problem raises RuntimeError in Python (plain TORCH_CHECK): with
// torch 2.11, throwing c10::ValueError (TORCH_CHECK_VALUE) from an extension
// crashed the interpreter instead of raising ValueError. The Python wrappers
// in mmscalable/ops/window_partition.py check the same conditions first and
// raise ValueError / TypeError.
#include <torch/extension.h>

#include "window_partition_utils.h"

namespace mmscalable {
namespace {

void check_window_size(int64_t window_size) {
  TORCH_CHECK(window_size >= 1, "window_size must be >= 1, got ",
                    window_size);
}

void check_floating_dtype(const at::Tensor& tensor, const char* name) {
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                       dtype == at::kHalf || dtype == at::kBFloat16,
                   name,
                   " must be float32, float64, float16 or bfloat16, got ",
                   dtype);
}

bool is_cuda_tensor(const at::Tensor& tensor) {
  if (!tensor.is_cuda()) {
    TORCH_CHECK(tensor.device().is_cpu(),
                "window partition ops support CPU and CUDA tensors only, got "
                "a tensor on ",
                tensor.device());
    return false;
  }
#ifdef WITH_CUDA
  return true;
#else
  TORCH_CHECK(false,
              "mmscalable._ext was compiled without CUDA support; rebuild "
              "with FORCE_CUDA=1 to run window partition ops on ",
              tensor.device());
  return false;
#endif
}

}  // namespace

// (B, H, W, C) -> (B * nH * nW, ws * ws, C), zero-padding bottom/right.
at::Tensor window_partition_forward(const at::Tensor& input,
                                    int64_t window_size) {
  TORCH_CHECK(input.dim() == 4,
                    "window_partition expects a 4-D (B, H, W, C) input, got "
                    "a tensor of rank ",
                    input.dim(), " with shape ", input.sizes());
  check_window_size(window_size);
  check_floating_dtype(input, "input");

  const int64_t batch = input.size(0);
  const int64_t num_win_h = num_windows_along(input.size(1), window_size);
  const int64_t num_win_w = num_windows_along(input.size(2), window_size);
  const int64_t channels = input.size(3);
  // The kernels index a dense (B, H, W, C) buffer; views such as slices or
  // permutes are materialised once here instead of in every kernel.
  const at::Tensor input_contig = input.contiguous();
  at::Tensor windows =
      at::empty({batch * num_win_h * num_win_w, window_size * window_size,
                 channels},
                input.options().memory_format(at::MemoryFormat::Contiguous));
  if (windows.numel() == 0) return windows;

  if (is_cuda_tensor(input)) {
#ifdef WITH_CUDA
    window_partition_forward_cuda(input_contig, windows, window_size);
#endif
  } else {
    window_partition_forward_cpu(input_contig, windows, window_size);
  }
  return windows;
}

// (B * nH * nW, ws * ws, C) -> (B, H, W, C), cropping the padding.
at::Tensor window_reverse_forward(const at::Tensor& windows,
                                  int64_t window_size, int64_t height,
                                  int64_t width) {
  TORCH_CHECK(windows.dim() == 3,
                    "window_reverse expects 3-D windows (B * nH * nW, "
                    "window_size * window_size, C), got a tensor of rank ",
                    windows.dim(), " with shape ", windows.sizes());
  check_window_size(window_size);
  TORCH_CHECK(height >= 1 && width >= 1,
                    "window_reverse needs H >= 1 and W >= 1, got H=", height,
                    ", W=", width);
  TORCH_CHECK(windows.size(1) == window_size * window_size,
                    "window_reverse: windows.shape[1] must be window_size ** "
                    "2 = ",
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
  const at::Tensor windows_contig = windows.contiguous();
  at::Tensor output =
      at::empty({batch, height, width, channels},
                windows.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0) return output;

  if (is_cuda_tensor(windows)) {
#ifdef WITH_CUDA
    window_reverse_forward_cuda(windows_contig, output, window_size);
#endif
  } else {
    window_reverse_forward_cpu(windows_contig, output, window_size);
  }
  return output;
}

}  // namespace mmscalable
