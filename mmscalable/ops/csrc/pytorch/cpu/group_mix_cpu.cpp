// Copyright (c) mmscalable contributors. All rights reserved.
//
// CPU implementation of the Group-Mix depthwise conv (layouts and index
// arithmetic in common/group_mix_utils.h).
//
// Work item: one stream and image, a block of channels and a band of output
// rows. Its input rows (plus the halo of the largest kernel) are gathered
// once into a zero-padded tile, channel-major with columns contiguous, in
// the accumulation type; every kernel size then runs over the same tile
// without bound checks, and the inner loop runs over contiguous columns.
// The input gradient is the same correlation with flipped kernels, reading
// the output gradient and writing the input's (B, H, W, S, C) layout; the
// weight gradient correlates the output gradient with the input tile.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "group_mix_utils.h"

namespace mmscalable {
namespace group_mix {
namespace {

// Channels and output rows of one work item: the tile of a 128-wide map
// with a 7x7 halo stays within a few hundred KB.
constexpr int64_t kChannelBlock = 16;
constexpr int64_t kRowBand = 16;
// Columns computed together in registers.
constexpr int kLanes = 16;

TokenStrides strides_of(const at::Tensor& tokens) {
  return {tokens.stride(0), tokens.stride(1), tokens.stride(2),
          tokens.stride(3), tokens.stride(4)};
}

// The (S * B, C, H, W) map seen as a (B, H, W, S, C) tensor.
TokenStrides map_strides(int64_t batch, int64_t channels, int64_t height,
                         int64_t width) {
  const int64_t plane = height * width;
  return {channels * plane, width, 1, batch * channels * plane, plane};
}

// Per-channel kernel side and first packed weight.
struct ChannelTable {
  std::vector<int> kernel_size;
  std::vector<int64_t> weight_begin;
};

ChannelTable channel_table(const GroupTable& table, int64_t channels) {
  ChannelTable result{std::vector<int>(channels),
                      std::vector<int64_t>(channels)};
  for (int64_t c = 0; c < channels; ++c) {
    const int group = group_of(table, c);
    result.kernel_size[c] = table.kernel_size[group];
    result.weight_begin[c] = group_mix::weight_begin(table, group, c);
  }
  return result;
}

// The packed weights in the accumulation type; `flip` reverses every
// kernel (the input gradient correlates with the flipped kernels).
template <typename scalar_t, typename acc_t>
std::vector<acc_t> packed_weights(const at::Tensor& weight,
                                  const ChannelTable& channels, bool flip) {
  const scalar_t* src = weight.const_data_ptr<scalar_t>();
  std::vector<acc_t> result(weight.numel());
  for (size_t c = 0; c < channels.kernel_size.size(); ++c) {
    const int64_t taps = static_cast<int64_t>(channels.kernel_size[c]) *
                         channels.kernel_size[c];
    const int64_t begin = channels.weight_begin[c];
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t from = flip ? taps - 1 - t : t;
      result[begin + t] = static_cast<acc_t>(src[begin + from]);
    }
  }
  return result;
}

// A zero-padded tile: `channels` x `rows` x `cols`, where rows and cols
// include a halo of `radius` on each side.
template <typename acc_t>
struct Tile {
  std::vector<acc_t> data;
  int64_t rows = 0;
  int64_t cols = 0;
  int radius = 0;

  acc_t* channel(int64_t c) { return data.data() + c * rows * cols; }
};

// Gathers source positions (b, h0 - R .. h0 + num_rows + R - 1, all
// columns, s, c0 .. c0 + num_channels - 1) into `tile`, zeros outside the
// map.
template <typename scalar_t, typename acc_t>
void load_tile(const scalar_t* src, const TokenStrides& strides, int64_t b,
               int64_t s, int64_t c0, int64_t num_channels, int64_t h0,
               int64_t num_rows, int64_t height, int64_t width,
               Tile<acc_t>& tile) {
  const int radius = tile.radius;
  tile.rows = num_rows + 2 * radius;
  tile.cols = width + 2 * radius;
  const size_t needed = static_cast<size_t>(num_channels * tile.rows * tile.cols);
  if (tile.data.size() < needed) tile.data.resize(needed);
  const acc_t zero = acc_t(0);
  for (int64_t tr = 0; tr < tile.rows; ++tr) {
    const int64_t h = tap_source(h0, static_cast<int>(tr), radius, height);
    for (int64_t c = 0; c < num_channels; ++c) {
      acc_t* row = tile.channel(c) + tr * tile.cols;
      if (h < 0) {
        std::fill_n(row, tile.cols, zero);
      } else {
        std::fill_n(row, radius, zero);
        std::fill_n(row + radius + width, radius, zero);
      }
    }
    if (h < 0) continue;
    // Blocks of columns: the block's tokens stay in L1 while every channel
    // is copied out of them into its own contiguous tile row (scattering
    // token by token into all the channel rows was 3x slower).
    constexpr int64_t kColumnBlock = 16;
    for (int64_t w0 = 0; w0 < width; w0 += kColumnBlock) {
      const int64_t block_width = std::min(kColumnBlock, width - w0);
      const scalar_t* block = src + token_offset(strides, b, h, w0, s, c0);
      for (int64_t c = 0; c < num_channels; ++c) {
        const scalar_t* column = block + c * strides.channel;
        acc_t* dst = tile.channel(c) + tr * tile.cols + radius + w0;
        for (int64_t w = 0; w < block_width; ++w)
          dst[w] = static_cast<acc_t>(column[w * strides.col]);
      }
    }
  }
}

// The inner loops run on GCC/Clang vector types: `Vec<T, bytes>` holds one
// register's worth of columns, and kLanes columns are accumulated in
// registers across all taps (the plain scalar loop kept the partial sums in
// memory and ran at a fifth of the speed). Baseline x86-64 builds get
// 16-byte (SSE2) vectors; where the CPU has AVX2 and FMA, a copy compiled for
// them with 32-byte vectors is chosen at run time (about 2x faster on
// these kernels).
#if defined(__GNUC__) && !defined(__clang__)
// The 32-byte helpers are always inlined into the AVX2 functions; GCC's
// note about their out-of-line ABI does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

template <typename T, int kBytes>
struct VecOf {
  typedef T type __attribute__((vector_size(kBytes)));
};
template <typename T, int kBytes>
using Vec = typename VecOf<T, kBytes>::type;

template <typename T, int kBytes>
__attribute__((always_inline)) inline Vec<T, kBytes> load_vec(const T* src) {
  Vec<T, kBytes> value;
  std::memcpy(&value, src, sizeof(value));
  return value;
}

template <typename T, int kBytes>
__attribute__((always_inline)) inline void store_vec(T* dst,
                                                     Vec<T, kBytes> value) {
  std::memcpy(dst, &value, sizeof(value));
}

// out[w] = sum_{i, j < k} taps[i * k + j] * src[i * cols + w + j] for one
// output row; `src` points at the tile position of tap (0, 0) of column 0.
// K > 0 fixes k at compile time (the common sizes), K = 0 reads `k`.
template <int K, typename acc_t, int kBytes>
__attribute__((always_inline)) inline void correlate_row(
    const acc_t* __restrict__ src, int64_t cols,
    const acc_t* __restrict__ taps, int k, int64_t width,
    acc_t* __restrict__ out) {
  constexpr int kPerVec = kBytes / sizeof(acc_t);
  constexpr int kVecs = kLanes / kPerVec;
  const int size = K > 0 ? K : k;
  int64_t w0 = 0;
  for (; w0 + kLanes <= width; w0 += kLanes) {
    Vec<acc_t, kBytes> sums[kVecs] = {};
    for (int i = 0; i < size; ++i) {
      const acc_t* line = src + i * cols + w0;
      for (int j = 0; j < size; ++j) {
        const acc_t tap = taps[i * size + j];
        for (int v = 0; v < kVecs; ++v)
          sums[v] += tap * load_vec<acc_t, kBytes>(line + j + v * kPerVec);
      }
    }
    for (int v = 0; v < kVecs; ++v)
      store_vec<acc_t, kBytes>(out + w0 + v * kPerVec, sums[v]);
  }
  for (; w0 < width; ++w0) {
    acc_t value = acc_t(0);
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j)
        value += taps[i * size + j] * src[i * cols + w0 + j];
    out[w0] = value;
  }
}

template <typename acc_t, int kBytes>
__attribute__((always_inline)) inline void correlate_row_sized(
    const acc_t* src, int64_t cols, const acc_t* taps, int k, int64_t width,
    acc_t* out) {
  switch (k) {
    case 1:
      return correlate_row<1, acc_t, kBytes>(src, cols, taps, k, width, out);
    case 3:
      return correlate_row<3, acc_t, kBytes>(src, cols, taps, k, width, out);
    case 5:
      return correlate_row<5, acc_t, kBytes>(src, cols, taps, k, width, out);
    case 7:
      return correlate_row<7, acc_t, kBytes>(src, cols, taps, k, width, out);
    default:
      return correlate_row<0, acc_t, kBytes>(src, cols, taps, k, width, out);
  }
}

// sums[i * k + j] += sum_w grad[w] * src[i * cols + w + j].
template <typename acc_t, int kBytes>
__attribute__((always_inline)) inline void accumulate_taps_sized(
    const acc_t* __restrict__ grad, const acc_t* __restrict__ src,
    int64_t cols, int k, int64_t width, acc_t* __restrict__ sums) {
  constexpr int kPerVec = kBytes / sizeof(acc_t);
  constexpr int kVecs = kLanes / kPerVec;
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) {
      const acc_t* line = src + i * cols + j;
      Vec<acc_t, kBytes> partial[kVecs] = {};
      int64_t w = 0;
      for (; w + kLanes <= width; w += kLanes)
        for (int v = 0; v < kVecs; ++v)
          partial[v] += load_vec<acc_t, kBytes>(grad + w + v * kPerVec) *
                        load_vec<acc_t, kBytes>(line + w + v * kPerVec);
      acc_t total = acc_t(0);
      for (; w < width; ++w) total += grad[w] * line[w];
      for (int v = 0; v < kVecs; ++v)
        for (int l = 0; l < kPerVec; ++l) total += partial[v][l];
      sums[i * k + j] += total;
    }
  }
}

template <typename acc_t>
void correlate_row_any(const acc_t* src, int64_t cols, const acc_t* taps,
                       int k, int64_t width, acc_t* out) {
  correlate_row_sized<acc_t, 16>(src, cols, taps, k, width, out);
}

template <typename acc_t>
void accumulate_taps_any(const acc_t* grad, const acc_t* src, int64_t cols,
                         int k, int64_t width, acc_t* sums) {
  accumulate_taps_sized<acc_t, 16>(grad, src, cols, k, width, sums);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MMSCALABLE_GROUP_MIX_AVX2 1
__attribute__((target("avx2,fma"))) void correlate_row_avx2(
    const float* src, int64_t cols, const float* taps, int k, int64_t width,
    float* out) {
  correlate_row_sized<float, 32>(src, cols, taps, k, width, out);
}

__attribute__((target("avx2,fma"))) void accumulate_taps_avx2(
    const float* grad, const float* src, int64_t cols, int k, int64_t width,
    float* sums) {
  accumulate_taps_sized<float, 32>(grad, src, cols, k, width, sums);
}

bool cpu_has_avx2() {
  static const bool has_avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has_avx2;
}

template <>
void correlate_row_any<float>(const float* src, int64_t cols,
                              const float* taps, int k, int64_t width,
                              float* out) {
  if (cpu_has_avx2()) return correlate_row_avx2(src, cols, taps, k, width, out);
  correlate_row_sized<float, 16>(src, cols, taps, k, width, out);
}

template <>
void accumulate_taps_any<float>(const float* grad, const float* src,
                                int64_t cols, int k, int64_t width,
                                float* sums) {
  if (cpu_has_avx2())
    return accumulate_taps_avx2(grad, src, cols, k, width, sums);
  accumulate_taps_sized<float, 16>(grad, src, cols, k, width, sums);
}
#endif

// The depthwise correlation of `src` (B, H, W, S, C strides) with the
// per-channel `taps`, plus bias and optional Hardswish, into `dst`
// (B, H, W, S, C strides): the forward pass and the input gradient.
template <typename scalar_t>
void correlate(const scalar_t* src, const TokenStrides& src_strides,
               scalar_t* dst, const TokenStrides& dst_strides,
               const std::vector<at::opmath_type<scalar_t>>& taps,
               const std::vector<at::opmath_type<scalar_t>>& bias,
               const ChannelTable& channels, int max_radius,
               bool apply_hardswish, int64_t batch, int64_t height,
               int64_t width, int64_t streams) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_channels = channels.kernel_size.size();
  const int64_t channel_blocks =
      (num_channels + kChannelBlock - 1) / kChannelBlock;
  const int64_t row_bands = (height + kRowBand - 1) / kRowBand;
  const int64_t items = streams * batch * channel_blocks * row_bands;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    Tile<acc_t> tile;
    tile.radius = max_radius;
    std::vector<acc_t> row(width);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t band = item % row_bands;
      const int64_t block = (item / row_bands) % channel_blocks;
      const int64_t b = (item / (row_bands * channel_blocks)) % batch;
      const int64_t s = item / (row_bands * channel_blocks * batch);
      const int64_t h0 = band * kRowBand;
      const int64_t num_rows = std::min(kRowBand, height - h0);
      const int64_t c0 = block * kChannelBlock;
      const int64_t block_channels = std::min(kChannelBlock, num_channels - c0);
      load_tile(src, src_strides, b, s, c0, block_channels, h0, num_rows,
                height, width, tile);
      for (int64_t c = 0; c < block_channels; ++c) {
        const int64_t channel = c0 + c;
        const int k = channels.kernel_size[channel];
        const int offset = halo_offset(k / 2, max_radius);
        const acc_t* channel_taps = taps.data() + channels.weight_begin[channel];
        const acc_t channel_bias = bias.empty() ? acc_t(0) : bias[channel];
        const acc_t* tile_channel = tile.channel(c);
        for (int64_t r = 0; r < num_rows; ++r) {
          correlate_row_any(tile_channel + (r + offset) * tile.cols + offset,
                            tile.cols, channel_taps, k, width, row.data());
          scalar_t* out =
              dst + token_offset(dst_strides, b, h0 + r, 0, s, channel);
          for (int64_t w = 0; w < width; ++w)
            out[w * dst_strides.col] = static_cast<scalar_t>(
                epilogue(row[w], channel_bias, apply_hardswish));
        }
      }
    }
  });
}

// grad_weight of every channel: tasks own blocks of channels and visit
// every stream, image and row band, so no two tasks write one weight.
template <typename scalar_t>
void weight_gradient(const scalar_t* grad_output, const scalar_t* input,
                     const TokenStrides& input_strides, scalar_t* grad_weight,
                     const ChannelTable& channels, int max_radius,
                     int64_t batch, int64_t height, int64_t width,
                     int64_t streams) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_channels = channels.kernel_size.size();
  constexpr int64_t kBlock = 4;
  const int64_t channel_blocks = (num_channels + kBlock - 1) / kBlock;
  const int64_t row_bands = (height + kRowBand - 1) / kRowBand;
  at::parallel_for(0, channel_blocks, 1, [&](int64_t begin, int64_t end) {
    Tile<acc_t> tile;
    tile.radius = max_radius;
    std::vector<acc_t> grad_row(width);
    std::vector<acc_t> sums;
    for (int64_t block = begin; block < end; ++block) {
      const int64_t c0 = block * kBlock;
      const int64_t block_channels = std::min(kBlock, num_channels - c0);
      const int64_t first = channels.weight_begin[c0];
      const int64_t last_channel = c0 + block_channels - 1;
      const int64_t last = channels.weight_begin[last_channel] +
                           static_cast<int64_t>(channels.kernel_size[last_channel]) *
                               channels.kernel_size[last_channel];
      sums.assign(last - first, acc_t(0));
      for (int64_t s = 0; s < streams; ++s) {
        for (int64_t b = 0; b < batch; ++b) {
          for (int64_t band = 0; band < row_bands; ++band) {
            const int64_t h0 = band * kRowBand;
            const int64_t num_rows = std::min(kRowBand, height - h0);
            load_tile(input, input_strides, b, s, c0, block_channels, h0,
                      num_rows, height, width, tile);
            for (int64_t c = 0; c < block_channels; ++c) {
              const int64_t channel = c0 + c;
              const int k = channels.kernel_size[channel];
              const int offset = halo_offset(k / 2, max_radius);
              acc_t* channel_sums =
                  sums.data() + channels.weight_begin[channel] - first;
              for (int64_t r = 0; r < num_rows; ++r) {
                const scalar_t* grad =
                    grad_output + map_offset(s * batch + b, channel, h0 + r, 0,
                                             num_channels, height, width);
                for (int64_t w = 0; w < width; ++w)
                  grad_row[w] = static_cast<acc_t>(grad[w]);
                accumulate_taps_any(grad_row.data(),
                                tile.channel(c) + (r + offset) * tile.cols +
                                    offset,
                                tile.cols, k, width, channel_sums);
              }
            }
          }
        }
      }
      for (int64_t i = 0; i < last - first; ++i)
        grad_weight[first + i] = static_cast<scalar_t>(sums[i]);
    }
  });
}

}  // namespace

void forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                 const at::Tensor& bias, const GroupTable& table,
                 bool apply_hardswish, at::Tensor& output) {
  const int64_t batch = input.size(0), height = input.size(1),
                width = input.size(2), streams = input.size(3),
                channels = input.size(4);
  const ChannelTable channel_info = channel_table(table, channels);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "group_mix_forward_cpu",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const std::vector<acc_t> taps =
            packed_weights<scalar_t, acc_t>(weight, channel_info, false);
        std::vector<acc_t> bias_values;
        if (bias.defined()) {
          const scalar_t* bias_ptr = bias.const_data_ptr<scalar_t>();
          bias_values.assign(bias_ptr, bias_ptr + channels);
        }
        correlate<scalar_t>(input.const_data_ptr<scalar_t>(),
                            strides_of(input),
                            output.mutable_data_ptr<scalar_t>(),
                            map_strides(batch, channels, height, width), taps,
                            bias_values, channel_info, table.max_radius,
                            apply_hardswish, batch, height, width, streams);
      });
}

void backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                  const at::Tensor& weight, const GroupTable& table,
                  at::Tensor& grad_input, at::Tensor& grad_weight) {
  const int64_t batch = input.size(0), height = input.size(1),
                width = input.size(2), streams = input.size(3),
                channels = input.size(4);
  const ChannelTable channel_info = channel_table(table, channels);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "group_mix_backward_cpu",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        if (grad_input.defined()) {
          const std::vector<acc_t> flipped =
              packed_weights<scalar_t, acc_t>(weight, channel_info, true);
          correlate<scalar_t>(grad_output.const_data_ptr<scalar_t>(),
                              map_strides(batch, channels, height, width),
                              grad_input.mutable_data_ptr<scalar_t>(),
                              strides_of(grad_input), flipped, {},
                              channel_info, table.max_radius, false, batch,
                              height, width, streams);
        }
        if (grad_weight.defined()) {
          weight_gradient<scalar_t>(grad_output.const_data_ptr<scalar_t>(),
                                    input.const_data_ptr<scalar_t>(),
                                    strides_of(input),
                                    grad_weight.mutable_data_ptr<scalar_t>(),
                                    channel_info, table.max_radius, batch,
                                    height, width, streams);
        }
      });
}

}  // namespace group_mix
}  // namespace mmscalable
