// Copyright (c) mmscalable contributors. All rights reserved.
//
// Arithmetic of the Group-Mix depthwise conv shared by the CPU and CUDA
// kernels (pytorch/cpu/group_mix_cpu.cpp, pytorch/cuda/group_mix_cuda.cu):
// the channel -> group table, the strided token index map, the halo (which
// input position a tap reads, zero padding outside the map) and the
// Hardswish epilogue.
//
// The op convolves every channel of a strided input
//   input  : (B, H, W, S, C)   any strides (e.g. a view of qkv tokens
//                              (B, H * W, S * C_stream), channels sliced)
// with its own odd k x k kernel (stride 1, padding k // 2), the kernel size
// fixed per group of consecutive channels, and writes the map
//   output : (S * B, C, H, W)  contiguous, streams outermost,
// optionally adding a per-channel bias and applying Hardswish.
// Weights are packed flat, group after group, channel after channel, each
// kernel row-major: the k x k taps of channel c start at weight_begin(c).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "host_device.h"

namespace mmscalable {
namespace group_mix {

// Most channel groups an op call may have (GroupMixFormer uses 3 or 4).
constexpr int kMaxGroups = 8;

// Strides of the (B, H, W, S, C) input, in elements.
struct TokenStrides {
  int64_t batch;
  int64_t row;
  int64_t col;
  int64_t stream;
  int64_t channel;
};

// The channel groups of one call. Passed by value to CUDA kernels.
struct GroupTable {
  int num_groups;
  int max_radius;
  // Exclusive end channel of each group (prefix sums of the widths).
  int64_t channel_end[kMaxGroups];
  // Kernel side of each group (odd).
  int kernel_size[kMaxGroups];
  // First weight of each group in the packed weights.
  int64_t weight_begin[kMaxGroups];
};

// Group of `channel`: the first group whose end lies beyond it.
MMSCALABLE_HOST_DEVICE int group_of(const GroupTable& table,
                                    int64_t channel) {
  int group = 0;
  while (group + 1 < table.num_groups && channel >= table.channel_end[group])
    ++group;
  return group;
}

MMSCALABLE_HOST_DEVICE int64_t group_begin(const GroupTable& table,
                                           int group) {
  return group == 0 ? 0 : table.channel_end[group - 1];
}

// First packed weight of `channel` in `group`.
MMSCALABLE_HOST_DEVICE int64_t weight_begin(const GroupTable& table,
                                            int group, int64_t channel) {
  const int64_t taps =
      static_cast<int64_t>(table.kernel_size[group]) * table.kernel_size[group];
  return table.weight_begin[group] + (channel - group_begin(table, group)) * taps;
}

// Group, channel and tap of packed weight `index`.
MMSCALABLE_HOST_DEVICE void weight_position(const GroupTable& table,
                                            int64_t index, int* group,
                                            int64_t* channel, int* tap) {
  int g = 0;
  while (g + 1 < table.num_groups && index >= table.weight_begin[g + 1]) ++g;
  const int64_t taps =
      static_cast<int64_t>(table.kernel_size[g]) * table.kernel_size[g];
  const int64_t offset = index - table.weight_begin[g];
  *group = g;
  *channel = group_begin(table, g) + offset / taps;
  *tap = static_cast<int>(offset % taps);
}

// Element offset of input position (b, h, w, s, c).
MMSCALABLE_HOST_DEVICE int64_t token_offset(const TokenStrides& strides,
                                            int64_t b, int64_t h, int64_t w,
                                            int64_t s, int64_t c) {
  return b * strides.batch + h * strides.row + w * strides.col +
         s * strides.stream + c * strides.channel;
}

// Element offset of output position (plane = s * B + b, c, h, w) in the
// contiguous (S * B, C, H, W) map.
MMSCALABLE_HOST_DEVICE int64_t map_offset(int64_t plane, int64_t c, int64_t h,
                                          int64_t w, int64_t channels,
                                          int64_t height, int64_t width) {
  return ((plane * channels + c) * height + h) * width + w;
}

// The input coordinate that tap `tap` (0 .. 2 * radius) of output coordinate
// `out` reads, or -1 where it falls in the zero padding around the map.
MMSCALABLE_HOST_DEVICE int64_t tap_source(int64_t out, int tap, int radius,
                                          int64_t extent) {
  const int64_t src = out + tap - radius;
  return (src >= 0 && src < extent) ? src : -1;
}

// The output coordinate whose tap `tap` reads input coordinate `in` (the
// adjoint of tap_source, for the input gradient), or -1 outside the map.
MMSCALABLE_HOST_DEVICE int64_t tap_target(int64_t in, int tap, int radius,
                                          int64_t extent) {
  const int64_t dst = in - tap + radius;
  return (dst >= 0 && dst < extent) ? dst : -1;
}

// Where a channel of radius `radius` starts reading a tile padded by the
// largest radius `max_radius` of the call: kernels of every size run over
// the same padded tile, the smaller ones offset into its halo.
MMSCALABLE_HOST_DEVICE int halo_offset(int radius, int max_radius) {
  return max_radius - radius;
}

// Hardswish x * relu6(x + 3) / 6, as torch.nn.functional.hardswish.
template <typename T>
MMSCALABLE_HOST_DEVICE T hardswish(T x) {
  const T shifted = x + T(3);
  const T gate = shifted < T(0) ? T(0) : (shifted > T(6) ? T(6) : shifted);
  return x * gate / T(6);
}

// The epilogue of an output value: bias, then Hardswish if requested.
template <typename T>
MMSCALABLE_HOST_DEVICE T epilogue(T value, T bias, bool apply_hardswish) {
  const T biased = value + bias;
  return apply_hardswish ? hardswish(biased) : biased;
}

// The table of a call from its kernel sizes and channels per group, checked
// against the input's `channels` (host only).
inline GroupTable make_table(c10::IntArrayRef kernel_sizes,
                      c10::IntArrayRef group_channels, int64_t channels) {
  TORCH_CHECK(!kernel_sizes.empty(),
              "group_mix_dwconv needs at least one channel group");
  TORCH_CHECK(kernel_sizes.size() == group_channels.size(),
              "group_mix_dwconv: kernel_sizes has ", kernel_sizes.size(),
              " entries but group_channels has ", group_channels.size());
  TORCH_CHECK(static_cast<int>(kernel_sizes.size()) <= kMaxGroups,
              "group_mix_dwconv supports at most ", kMaxGroups,
              " channel groups, got ", kernel_sizes.size());
  GroupTable table{};
  table.num_groups = static_cast<int>(kernel_sizes.size());
  int64_t channel_end = 0, weight_end = 0;
  for (int g = 0; g < table.num_groups; ++g) {
    const int64_t k = kernel_sizes[g];
    TORCH_CHECK(k >= 1 && k % 2 == 1 && k <= 31,
                "group_mix_dwconv: kernel sizes must be odd, between 1 and "
                "31, got ",
                kernel_sizes);
    TORCH_CHECK(group_channels[g] >= 1,
                "group_mix_dwconv: every group needs at least one channel, "
                "got group_channels ",
                group_channels);
    table.kernel_size[g] = static_cast<int>(k);
    table.weight_begin[g] = weight_end;
    channel_end += group_channels[g];
    weight_end += group_channels[g] * k * k;
    table.channel_end[g] = channel_end;
    table.max_radius = std::max(table.max_radius, static_cast<int>(k / 2));
  }
  TORCH_CHECK(channel_end == channels, "group_mix_dwconv: group_channels ",
              group_channels, " add up to ", channel_end,
              " channels, but the input has ", channels);
  return table;
}

// Device implementations, called by the front end (pytorch/group_mix.cpp)
// with checked arguments: `input` (B, H, W, S, C) of any strides, `output`
// (S * B, C, H, W) and `grad_input` (B, H, W, S, C) contiguous, `weight`
// packed and contiguous, `bias` of C values or undefined.
void forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                 const at::Tensor& bias, const GroupTable& table,
                 bool apply_hardswish, at::Tensor& output);
void backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                  const at::Tensor& weight, const GroupTable& table,
                  at::Tensor& grad_input, at::Tensor& grad_weight);
#ifdef WITH_CUDA
void forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                  const at::Tensor& bias, const GroupTable& table,
                  bool apply_hardswish, at::Tensor& output);
void backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                   const at::Tensor& weight, const GroupTable& table,
                   at::Tensor& grad_input, at::Tensor& grad_weight);
#endif

}  // namespace group_mix
}  // namespace mmscalable
