// Copyright (c) mmscalable contributors. All rights reserved.
//
// CUDA kernels of the Group-Mix depthwise conv (layouts and index arithmetic
// in common/group_mix_utils.h, shared with the CPU kernels), launched by
// pytorch/cuda/group_mix_cuda.cu and, in the tests, by an emulation of
// CUDA's execution model on the CPU.
//
// The input is a token layout (B, H, W, S, C) whose channels are innermost
// (stride 1 for a view of qkv tokens); the output map (S * B, C, H, W) has
// its columns innermost. Every kernel therefore works on a tile of
// kTileRows x kTileCols positions x `channels` channels of one plane, staged
// in shared memory so that global reads and writes run along the innermost
// axis of their own tensor across neighbouring threads (coalesced):
//
//   forward_kernel      reads the input patch (tile plus the largest halo)
//                       with channels across threads, computes outputs with
//                       columns across threads and writes them along W.
//   input_grad_kernel   the mirror: reads the output gradient's patch along
//                       W, writes the input gradient along C.
//   weight_grad_kernel  stages the output gradient's tile and the input's
//                       patch, and every thread sums the products of its
//                       packed weights (channel, tap) over the tile, in
//                       registers across the tiles its block visits; one
//                       partial sum per block and weight goes to a
//                       workspace, which reduce_partials_kernel adds up in a
//                       fixed order (deterministic, no atomics).
//
// Accumulation in float for half and bfloat16 (at::opmath_type), double for
// double. Indices are 64-bit. Zero padding outside the map is staged as
// zeros, so the taps read the tile without bounds tests.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "../group_mix_utils.h"
#include "device_runtime.cuh"

namespace mmscalable {
namespace group_mix {

constexpr int kTileRows = 4;
constexpr int kTileCols = 32;
constexpr int kThreads = 256;
// Packed weights one thread of weight_grad_kernel sums in registers.
constexpr int kWeightsPerThread = 8;
constexpr int kWeightsPerBlock = kThreads * kWeightsPerThread;
// Shared memory a kernel may use without the opt-in attribute.
constexpr int64_t kDefaultSharedBytes = 48 * 1024;
// Blocks of the weight gradient to aim for (several per SM of a large GPU).
constexpr int64_t kWeightGradTargetBlocks = 1024;
// A grid-stride loop covers tiles beyond this many blocks.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

struct Shape {
  int64_t batch, height, width, streams, channels;
};

// How the map is cut into tiles: `channels` per tile (the smaller for
// large kernels, so that a block's sums fit its registers and its patch
// its shared memory), and the tiles along each axis.
struct Tiling {
  int channels;
  int halo;  // the largest radius of the call
  int64_t channel_tiles, row_tiles, col_tiles;
  int64_t planes;  // S * B
  MMSCALABLE_HOST_DEVICE int patch_rows() const {
    return kTileRows + 2 * halo;
  }
  MMSCALABLE_HOST_DEVICE int patch_cols() const {
    return kTileCols + 2 * halo;
  }
  // Channel stride of a channels-innermost tile: odd, so that threads
  // reading neighbouring positions of one channel hit different banks.
  MMSCALABLE_HOST_DEVICE int channel_pitch() const { return channels + 1; }
  MMSCALABLE_HOST_DEVICE int64_t spatial_tiles() const {
    return row_tiles * col_tiles;
  }
  MMSCALABLE_HOST_DEVICE int64_t tiles() const {
    return planes * channel_tiles * spatial_tiles();
  }
};

// Shared memory of each kernel, in elements of the accumulation type.
MMSCALABLE_HOST_DEVICE int64_t patch_elements(const Tiling& t) {
  return int64_t(t.patch_rows()) * t.patch_cols() * t.channel_pitch();
}

// The columns-innermost patch of input_grad_kernel: one plane per channel,
// its pitch odd for the same reason as channel_pitch.
MMSCALABLE_HOST_DEVICE int64_t plane_pitch(const Tiling& t) {
  return (int64_t(t.patch_rows()) * t.patch_cols()) | 1;
}

MMSCALABLE_HOST_DEVICE int64_t forward_shared_elements(const Tiling& t) {
  return patch_elements(t);
}

MMSCALABLE_HOST_DEVICE int64_t input_grad_shared_elements(const Tiling& t) {
  return t.channels * plane_pitch(t);
}

MMSCALABLE_HOST_DEVICE int64_t weight_grad_shared_elements(const Tiling& t) {
  return patch_elements(t) +
         int64_t(kTileRows) * kTileCols * t.channel_pitch();
}

// The tiling of a call: the widest channel tile (at most 64 bytes of
// channels) whose packed weights one block can sum in registers and whose
// shared memory fits `shared_limit` bytes in every kernel.
inline Tiling plan_tiling(const Shape& shape, const GroupTable& table,
                          int64_t element_size, int64_t shared_limit) {
  int max_kernel = 1;
  for (int g = 0; g < table.num_groups; ++g)
    max_kernel = table.kernel_size[g] > max_kernel ? table.kernel_size[g]
                                                   : max_kernel;
  Tiling t{};
  t.halo = table.max_radius;
  t.channels = static_cast<int>(64 / element_size);
  while (t.channels > 1 &&
         int64_t(t.channels) * max_kernel * max_kernel > kWeightsPerBlock)
    t.channels /= 2;
  const auto largest = [&] {
    const int64_t a = forward_shared_elements(t);
    const int64_t b = input_grad_shared_elements(t);
    const int64_t c = weight_grad_shared_elements(t);
    return (a > b ? (a > c ? a : c) : (b > c ? b : c)) * element_size;
  };
  while (t.channels > 1 && largest() > shared_limit) t.channels /= 2;
  t.channel_tiles = (shape.channels + t.channels - 1) / t.channels;
  t.row_tiles = (shape.height + kTileRows - 1) / kTileRows;
  t.col_tiles = (shape.width + kTileCols - 1) / kTileCols;
  t.planes = shape.streams * shape.batch;
  return t;
}

// Where tile `tile` (of Tiling::tiles()) lies: plane, first channel, row
// and column.
struct TileOrigin {
  int64_t plane, c0, h0, w0;
};

MMSCALABLE_HOST_DEVICE TileOrigin tile_origin(const Tiling& t, int64_t tile) {
  TileOrigin o;
  const int64_t col_tile = tile % t.col_tiles;
  int64_t rest = tile / t.col_tiles;
  const int64_t row_tile = rest % t.row_tiles;
  rest /= t.row_tiles;
  o.c0 = (rest % t.channel_tiles) * t.channels;
  o.plane = rest / t.channel_tiles;
  o.h0 = row_tile * kTileRows;
  o.w0 = col_tile * kTileCols;
  return o;
}

// The (S * B, C, H, W) map's value at (plane, channel, h, w): zero outside
// the map and beyond the last channel.
template <typename acc_t, typename scalar_t>
__device__ __forceinline__ acc_t map_value(const scalar_t* __restrict__ map,
                                           const Shape& shape, int64_t plane,
                                           int64_t channel, int64_t h,
                                           int64_t w) {
  const bool inside = h >= 0 && h < shape.height && w >= 0 &&
                      w < shape.width && channel < shape.channels;
  return inside ? static_cast<acc_t>(
                      map[map_offset(plane, channel, h, w, shape.channels,
                                     shape.height, shape.width)])
                : acc_t(0);
}

// Stages the input patch of a tile (rows h0 - halo .. h0 + kTileRows +
// halo, columns likewise, channels c0 ..), channels innermost with
// `channel_pitch`, zeros outside the map and beyond the last channel.
// Neighbouring threads read neighbouring channels.
template <typename scalar_t, typename acc_t>
__device__ void stage_input_patch(const scalar_t* __restrict__ input,
                                  const TokenStrides& strides,
                                  const Shape& shape, const Tiling& t,
                                  const TileOrigin& o, acc_t* patch) {
  const int64_t b = o.plane % shape.batch, s = o.plane / shape.batch;
  const int cols = t.patch_cols(), pitch = t.channel_pitch();
  const int count = t.patch_rows() * cols * t.channels;
  for (int idx = threadIdx.x; idx < count; idx += blockDim.x) {
    const int c = idx % t.channels;
    const int pos = idx / t.channels;
    const int col = pos % cols, row = pos / cols;
    const int64_t h = o.h0 - t.halo + row, w = o.w0 - t.halo + col;
    const int64_t channel = o.c0 + c;
    const bool inside = h >= 0 && h < shape.height && w >= 0 &&
                        w < shape.width && channel < shape.channels;
    patch[pos * pitch + c] =
        inside ? static_cast<acc_t>(
                     input[token_offset(strides, b, h, w, s, channel)])
               : acc_t(0);
  }
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ input,
                               TokenStrides strides,
                               const scalar_t* __restrict__ weight,
                               const scalar_t* __restrict__ bias,
                               GroupTable table, Shape shape, Tiling t,
                               bool apply_hardswish,
                               scalar_t* __restrict__ output) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t* patch = cuda::dynamic_shared<acc_t>();
  const int cols = t.patch_cols(), pitch = t.channel_pitch();
  const int outputs = t.channels * kTileRows * kTileCols;
  for (int64_t tile = blockIdx.x; tile < t.tiles(); tile += gridDim.x) {
    const TileOrigin o = tile_origin(t, tile);
    stage_input_patch(input, strides, shape, t, o, patch);
    __syncthreads();
    // Columns across threads: the writes run along W.
    for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
      const int j = idx % kTileCols;
      const int i = (idx / kTileCols) % kTileRows;
      const int c = idx / (kTileCols * kTileRows);
      const int64_t h = o.h0 + i, w = o.w0 + j, channel = o.c0 + c;
      if (h >= shape.height || w >= shape.width || channel >= shape.channels)
        continue;
      const int group = group_of(table, channel);
      const int k = table.kernel_size[group];
      const int first = halo_offset(k / 2, t.halo);
      const scalar_t* taps = weight + weight_begin(table, group, channel);
      acc_t sum = acc_t(0);
      for (int ti = 0; ti < k; ++ti) {
        const acc_t* row = patch + ((i + first + ti) * cols + j + first) *
                                       pitch + c;
        for (int tj = 0; tj < k; ++tj) {
          sum += static_cast<acc_t>(taps[ti * k + tj]) * row[tj * pitch];
        }
      }
      const acc_t channel_bias =
          bias == nullptr ? acc_t(0) : static_cast<acc_t>(bias[channel]);
      output[map_offset(o.plane, channel, h, w, shape.channels, shape.height,
                        shape.width)] =
          static_cast<scalar_t>(epilogue(sum, channel_bias, apply_hardswish));
    }
    __syncthreads();  // the next tile overwrites the patch
  }
}

// grad_input (B, H, W, S, C), contiguous.
template <typename scalar_t>
__global__ void input_grad_kernel(const scalar_t* __restrict__ grad_output,
                                  const scalar_t* __restrict__ weight,
                                  GroupTable table, Shape shape, Tiling t,
                                  scalar_t* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t* patch = cuda::dynamic_shared<acc_t>();
  const int rows = t.patch_rows(), cols = t.patch_cols();
  const int64_t pitch = plane_pitch(t);
  const int count = t.channels * rows * cols;
  const int outputs = t.channels * kTileRows * kTileCols;
  for (int64_t tile = blockIdx.x; tile < t.tiles(); tile += gridDim.x) {
    const TileOrigin o = tile_origin(t, tile);
    // The output gradient's patch, columns across threads (reads along W).
    for (int idx = threadIdx.x; idx < count; idx += blockDim.x) {
      const int col = idx % cols;
      const int row = (idx / cols) % rows;
      const int c = idx / (cols * rows);
      const int64_t h = o.h0 - t.halo + row, w = o.w0 - t.halo + col;
      patch[c * pitch + row * cols + col] =
          map_value<acc_t>(grad_output, shape, o.plane, o.c0 + c, h, w);
    }
    __syncthreads();
    const int64_t b = o.plane % shape.batch, s = o.plane / shape.batch;
    // Channels across threads: the writes run along C.
    for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
      const int c = idx % t.channels;
      const int j = (idx / t.channels) % kTileCols;
      const int i = idx / (t.channels * kTileCols);
      const int64_t h = o.h0 + i, w = o.w0 + j, channel = o.c0 + c;
      if (h >= shape.height || w >= shape.width || channel >= shape.channels)
        continue;
      const int group = group_of(table, channel);
      const int k = table.kernel_size[group];
      const int radius = k / 2;
      const scalar_t* taps = weight + weight_begin(table, group, channel);
      // Tap (ti, tj) of output (h - ti + radius, w - tj + radius) reads
      // this position (tap_target); its patch row is i - ti + radius + halo.
      acc_t sum = acc_t(0);
      for (int ti = 0; ti < k; ++ti) {
        const acc_t* row = patch + c * pitch +
                           (i - ti + radius + t.halo) * cols + j + radius +
                           t.halo;
        for (int tj = 0; tj < k; ++tj) {
          sum += static_cast<acc_t>(taps[ti * k + tj]) * row[-tj];
        }
      }
      grad_input[(((b * shape.height + h) * shape.width + w) * shape.streams +
                  s) *
                     shape.channels +
                 channel] = static_cast<scalar_t>(sum);
    }
    __syncthreads();
  }
}

// How weight_grad_kernel spreads the tiles of a channel tile over blocks.
MMSCALABLE_HOST_DEVICE int64_t weight_grad_slots(const Tiling& t) {
  const int64_t tiles = t.planes * t.spatial_tiles();
  int64_t slots = (kWeightGradTargetBlocks + t.channel_tiles - 1) /
                  t.channel_tiles;
  slots = slots < tiles ? slots : tiles;
  return slots < 1 ? 1 : slots;
}

// Block (channel tile, slot) visits the slot's spatial tiles of every plane
// and writes one partial sum per packed weight of its channels to
// partials[slot * num_weights + weight].
template <typename scalar_t>
__global__ void weight_grad_kernel(const scalar_t* __restrict__ grad_output,
                                   const scalar_t* __restrict__ input,
                                   TokenStrides strides, GroupTable table,
                                   Shape shape, Tiling t, int64_t slots,
                                   int64_t num_weights,
                                   at::opmath_type<scalar_t>* partials) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t* patch = cuda::dynamic_shared<acc_t>();
  acc_t* grads = patch + patch_elements(t);  // (rows, cols, pitch)
  const int cols = t.patch_cols(), pitch = t.channel_pitch();
  const int64_t channel_tile = blockIdx.x / slots;
  const int64_t slot = blockIdx.x % slots;
  const int64_t c0 = channel_tile * t.channels;
  const int64_t c1 =
      c0 + t.channels < shape.channels ? c0 + t.channels : shape.channels;
  // The packed weights of channels c0 .. c1 are consecutive.
  const int64_t first = weight_begin(table, group_of(table, c0), c0);
  const int64_t last = c1 < shape.channels
                           ? weight_begin(table, group_of(table, c1), c1)
                           : num_weights;
  const int64_t count = last - first;
  acc_t sums[kWeightsPerThread];
  for (int m = 0; m < kWeightsPerThread; ++m) sums[m] = acc_t(0);
  const int64_t tiles = t.planes * t.spatial_tiles();
  const int outputs = kTileRows * kTileCols * t.channels;
  for (int64_t tile = slot; tile < tiles; tile += slots) {
    const int64_t spatial = tile % t.spatial_tiles();
    const TileOrigin o = tile_origin(
        t, ((tile / t.spatial_tiles()) * t.channel_tiles + channel_tile) *
                   t.spatial_tiles() +
               spatial);
    stage_input_patch(input, strides, shape, t, o, patch);
    // The output gradient's tile, columns across threads (reads along W),
    // stored channels innermost; zeros outside the map.
    for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
      const int j = idx % kTileCols;
      const int i = (idx / kTileCols) % kTileRows;
      const int c = idx / (kTileCols * kTileRows);
      grads[(i * kTileCols + j) * pitch + c] = map_value<acc_t>(
          grad_output, shape, o.plane, o.c0 + c, o.h0 + i, o.w0 + j);
    }
    __syncthreads();
    for (int m = 0; m < kWeightsPerThread; ++m) {
      const int64_t index = threadIdx.x + int64_t(m) * blockDim.x;
      if (index >= count) break;
      int group, tap;
      int64_t channel;
      weight_position(table, first + index, &group, &channel, &tap);
      const int k = table.kernel_size[group];
      const int first_tap = halo_offset(k / 2, t.halo);
      const int ti = tap / k, tj = tap % k;
      const int c = static_cast<int>(channel - c0);
      acc_t sum = acc_t(0);
      for (int i = 0; i < kTileRows; ++i) {
        const acc_t* g = grads + i * kTileCols * pitch + c;
        const acc_t* x =
            patch + ((i + first_tap + ti) * cols + first_tap + tj) * pitch + c;
        for (int j = 0; j < kTileCols; ++j) {
          sum += g[j * pitch] * x[j * pitch];
        }
      }
      sums[m] += sum;
    }
    __syncthreads();
  }
  for (int m = 0; m < kWeightsPerThread; ++m) {
    const int64_t index = threadIdx.x + int64_t(m) * blockDim.x;
    if (index >= count) break;
    partials[slot * num_weights + first + index] = sums[m];
  }
}

// grad_weight[w] = sum over slots of partials[slot * num_weights + w], in
// slot order.
template <typename scalar_t>
__global__ void reduce_partials_kernel(
    const at::opmath_type<scalar_t>* __restrict__ partials, int64_t slots,
    int64_t num_weights, scalar_t* __restrict__ grad_weight) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t w = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       w < num_weights; w += int64_t(blockDim.x) * gridDim.x) {
    acc_t sum = acc_t(0);
    for (int64_t slot = 0; slot < slots; ++slot)
      sum += partials[slot * num_weights + w];
    grad_weight[w] = static_cast<scalar_t>(sum);
  }
}

// Launch sizes shared by the .cu file and the tests' emulation.
inline int64_t tile_blocks(const Tiling& t) {
  return t.tiles() < kMaxBlocks ? t.tiles() : kMaxBlocks;
}

inline int64_t reduce_blocks(int64_t num_weights) {
  const int64_t blocks = (num_weights + kThreads - 1) / kThreads;
  return blocks < 1 ? 1 : (blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace group_mix
}  // namespace mmscalable
