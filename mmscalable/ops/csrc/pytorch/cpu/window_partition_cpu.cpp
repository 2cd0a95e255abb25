// Copyright (c) mmscalable contributors. All rights reserved.
//
// CPU implementation of window partition / reverse. Channels are innermost in
// both layouts, so each (window, token row) is one contiguous run of at most
// window_size * C elements on both sides: the kernels copy runs, not
// elements, and fill the padded tail with zeros.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "window_partition_utils.h"

namespace mmscalable {
namespace {

// Windows hold window_size^2 * C elements; aim for ~32K elements per task so
// that small maps are not split into tasks that cost more than they copy.
int64_t grain_size_for(int64_t elements_per_item) {
  constexpr int64_t kElementsPerTask = 32768;
  return std::max<int64_t>(1, kElementsPerTask /
                                  std::max<int64_t>(1, elements_per_item));
}

template <typename scalar_t>
void partition_kernel(const scalar_t* input, scalar_t* windows, int64_t batch,
                      int64_t height, int64_t width, int64_t channels,
                      int64_t window_size) {
  const int64_t num_win_h = num_windows_along(height, window_size);
  const int64_t num_win_w = num_windows_along(width, window_size);
  const int64_t num_windows = batch * num_win_h * num_win_w;
  const int64_t row_elems = window_size * channels;
  const int64_t window_elems = window_size * row_elems;
  const scalar_t zero = static_cast<scalar_t>(0);

  at::parallel_for(
      0, num_windows, grain_size_for(window_elems),
      [&](int64_t begin, int64_t end) {
        for (int64_t win = begin; win < end; ++win) {
          const int64_t win_col = win % num_win_w;
          const int64_t win_row = (win / num_win_w) % num_win_h;
          const int64_t b = win / (num_win_w * num_win_h);
          const int64_t w0 = win_col * window_size;
          // Columns of this window that lie inside the map.
          const int64_t valid_w = std::min(window_size, width - w0);
          scalar_t* dst = windows + win * window_elems;
          for (int64_t ty = 0; ty < window_size; ++ty, dst += row_elems) {
            const int64_t h = win_row * window_size + ty;
            if (h >= height) {
              std::fill_n(dst, row_elems, zero);
              continue;
            }
            const scalar_t* src =
                input + ((b * height + h) * width + w0) * channels;
            std::copy_n(src, valid_w * channels, dst);
            std::fill_n(dst + valid_w * channels,
                        (window_size - valid_w) * channels, zero);
          }
        }
      });
}

template <typename scalar_t>
void reverse_kernel(const scalar_t* windows, scalar_t* output, int64_t batch,
                    int64_t height, int64_t width, int64_t channels,
                    int64_t window_size) {
  const int64_t num_win_h = num_windows_along(height, window_size);
  const int64_t num_win_w = num_windows_along(width, window_size);
  const int64_t window_elems = window_size * window_size * channels;
  const int64_t map_row_elems = width * channels;

  // One item per output row (b, h): each is written by exactly one task.
  at::parallel_for(
      0, batch * height, grain_size_for(map_row_elems),
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t h = row % height;
          const int64_t b = row / height;
          const int64_t win_row = h / window_size;
          const int64_t ty = h % window_size;
          scalar_t* dst = output + row * map_row_elems;
          for (int64_t win_col = 0; win_col < num_win_w; ++win_col) {
            const int64_t w0 = win_col * window_size;
            const int64_t valid_w = std::min(window_size, width - w0);
            const int64_t win =
                (b * num_win_h + win_row) * num_win_w + win_col;
            const scalar_t* src =
                windows + win * window_elems + ty * window_size * channels;
            std::copy_n(src, valid_w * channels, dst + w0 * channels);
          }
        }
      });
}

}  // namespace

void window_partition_forward_cpu(const at::Tensor& input, at::Tensor& windows,
                                  int64_t window_size) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(),
      "window_partition_forward_cpu", [&] {
        partition_kernel<scalar_t>(input.const_data_ptr<scalar_t>(),
                                   windows.mutable_data_ptr<scalar_t>(),
                                   input.size(0), input.size(1), input.size(2),
                                   input.size(3), window_size);
      });
}

void window_reverse_forward_cpu(const at::Tensor& windows, at::Tensor& output,
                                int64_t window_size) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, windows.scalar_type(),
      "window_reverse_forward_cpu", [&] {
        reverse_kernel<scalar_t>(windows.const_data_ptr<scalar_t>(),
                                 output.mutable_data_ptr<scalar_t>(),
                                 output.size(0), output.size(1),
                                 output.size(2), output.size(3), window_size);
      });
}

}  // namespace mmscalable
