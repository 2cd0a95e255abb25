// Copyright (c) mmscalable contributors. All rights reserved.
//
// CUDA kernels of the fused refined attention (see
// common/refined_attention_utils.h for the computation and the launch
// planning), launched by pytorch/cuda/refined_attention_cuda.cu and, in the
// tests, by an emulation of CUDA's execution model on the CPU.
//
// Every kernel works on tiles of `rows` query rows x `cols` key columns of
// one image, staged in shared memory with the halo the 3x3 convolution
// needs, and never writes an expanded (E, N, N) map to global memory:
//
//   forward        one block per tile of query rows; it loops over the key
//                  tiles, refines each (1x1 expand, 3x3 depthwise, 1x1
//                  reduce, epilogue) and accumulates the tile's product with
//                  V in shared memory.
//   backward_rows  one block per tile of query rows: recomputes the hidden
//                  maps with a two-row/column halo, the gradient of the
//                  refined map (grad_out V^T) with a one-row/column halo,
//                  writes the rows' gradient of A and adds the parameters'
//                  gradients (block sums, one atomic per parameter).
//   backward_value one block per tile of key columns: recomputes the refined
//                  map down the query rows and writes the columns' gradient
//                  of V, M^T grad_out, without atomics.
//
// Blocks are numbered image-major along the grid's x axis (tile = block %
// tiles, image = block / tiles). Arithmetic is in float (double for double
// maps).
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "../refined_attention_utils.h"
#include "device_runtime.cuh"

namespace mmscalable {
namespace refined_attention {
namespace ra = ::mmscalable::refined_attention;

template <typename acc_t>
using Params = FoldedRefinement<acc_t>;

// Sizes of one launch: maps (heads, n, n), values (heads, n, dims), the
// tile (rows x cols) and the tiles per image along the tiled axis.
struct Shape {
  int64_t heads, hidden, n, dims;
  int rows, cols;
  int64_t tiles;
};

// The parameters' gradients, in the accumulation type (atomics need it).
template <typename acc_t>
struct Grads {
  acc_t* w_expand;
  acc_t* b_expand;
  acc_t* w_depthwise;
  acc_t* b_depthwise;
  acc_t* w_reduce;
  acc_t* b_reduce;
  acc_t* alpha;
};

__device__ __forceinline__ bool in_map(int64_t row, int64_t col, int64_t n) {
  return ra::row_in_map(row, n) && ra::row_in_map(col, n);
}

// Map values of the tile's rows [row0, row0 + h_rows) and columns
// [col0, col0 + h_cols) of image `attn` (H, N, N), zero outside the map.
template <typename scalar_t, typename acc_t>
__device__ void load_maps(const scalar_t* attn, const Shape& s, int64_t row0,
                          int64_t col0, int h_rows, int h_cols, acc_t* maps) {
  const int count = s.heads * h_rows * h_cols;
  for (int idx = threadIdx.x; idx < count; idx += blockDim.x) {
    const int j = idx % h_cols;
    const int i = (idx / h_cols) % h_rows;
    const int64_t h = idx / (h_cols * h_rows);
    const int64_t row = row0 + i, col = col0 + j;
    maps[idx] = in_map(row, col, s.n)
                    ? static_cast<acc_t>(attn[(h * s.n + row) * s.n + col])
                    : acc_t(0);
  }
}

// z1 = b_expand + w_expand A at every position of the staged tile.
template <typename acc_t>
__device__ void expand_tile(const Params<acc_t>& p, const Shape& s,
                            const acc_t* maps, int h_rows, int h_cols,
                            acc_t* z1) {
  const int plane = h_rows * h_cols;
  const int count = s.hidden * plane;
  for (int idx = threadIdx.x; idx < count; idx += blockDim.x) {
    const int64_t e = idx / plane;
    const int pos = idx % plane;
    acc_t z = p.b_expand[e];
    for (int64_t h = 0; h < s.heads; ++h) {
      z += p.w_expand[e * s.heads + h] * maps[h * plane + pos];
    }
    z1[idx] = z;
  }
}

// h1 at tile position (i, j) of channel e: relu6(z1) inside the map, zero
// outside it (the conv pads the hidden map).
template <typename acc_t>
__device__ __forceinline__ acc_t hidden_at(const acc_t* z1, int64_t e, int i,
                                           int j, int h_rows, int h_cols,
                                           int64_t row, int64_t col,
                                           int64_t n) {
  return in_map(row, col, n)
             ? ra::relu6(z1[(e * h_rows + i) * h_cols + j])
             : acc_t(0);
}

// z2 of channel e at tile position (i, j) of a z1 tile whose position
// (i, j) holds map position (row, col); the taps read the neighbours.
template <typename acc_t>
__device__ __forceinline__ acc_t depthwise_at(const Params<acc_t>& p,
                                              const acc_t* z1, int64_t e,
                                              int i, int j, int h_rows,
                                              int h_cols, int64_t row,
                                              int64_t col, int64_t n) {
  acc_t z = p.b_depthwise[e];
  for (int dy = -ra::kHalo; dy <= ra::kHalo; ++dy) {
    for (int dx = -ra::kHalo; dx <= ra::kHalo; ++dx) {
      z += p.w_depthwise[e * ra::kTaps + ra::tap_index(dy, dx)] *
           hidden_at(z1, e, i + dy, j + dx, h_rows, h_cols, row + dy,
                     col + dx, n);
    }
  }
  return z;
}

// The refined map M (H x rows x cols) of the tile's own positions, from z1
// and maps staged with a one-position halo (`h_rows` = rows + 2).
template <typename acc_t>
__device__ void refine_tile(const Params<acc_t>& p, const Shape& s,
                            const acc_t* maps, const acc_t* z1, int64_t row0,
                            int64_t col0, acc_t* refined) {
  const int h_rows = s.rows + 2 * ra::kHalo, h_cols = s.cols + 2 * ra::kHalo;
  const int plane = h_rows * h_cols;
  for (int idx = threadIdx.x; idx < s.rows * s.cols; idx += blockDim.x) {
    const int i = idx / s.cols, j = idx % s.cols;
    const int64_t row = row0 + i, col = col0 + j;
    if (!in_map(row, col, s.n)) {
      for (int64_t h = 0; h < s.heads; ++h) {
        refined[h * s.rows * s.cols + idx] = acc_t(0);
      }
      continue;
    }
    acc_t reduced[ra::kMaxCudaHeads];
    for (int64_t h = 0; h < s.heads; ++h) reduced[h] = acc_t(0);
    for (int64_t e = 0; e < s.hidden; ++e) {
      const acc_t y = ra::relu6(depthwise_at(p, z1, e, i + ra::kHalo,
                                             j + ra::kHalo, h_rows, h_cols,
                                             row, col, s.n));
      for (int64_t h = 0; h < s.heads; ++h) {
        reduced[h] += p.w_reduce[h * s.hidden + e] * y;
      }
    }
    const int pos = (i + ra::kHalo) * h_cols + j + ra::kHalo;
    for (int64_t h = 0; h < s.heads; ++h) {
      refined[h * s.rows * s.cols + idx] = ra::refined_value(
          p.alpha[h], maps[h * plane + pos], p.b_reduce[h], reduced[h]);
    }
  }
}

// Stages the tile (row0, col0) and refines it into `refined`.
template <typename scalar_t, typename acc_t>
__device__ void refined_tile(const scalar_t* attn, const Params<acc_t>& p,
                             const Shape& s, int64_t row0, int64_t col0,
                             acc_t* maps, acc_t* z1, acc_t* refined) {
  const int h_rows = s.rows + 2 * ra::kHalo, h_cols = s.cols + 2 * ra::kHalo;
  load_maps(attn, s, row0 - ra::kHalo, col0 - ra::kHalo, h_rows, h_cols,
            maps);
  __syncthreads();
  expand_tile(p, s, maps, h_rows, h_cols, z1);
  __syncthreads();
  refine_tile(p, s, maps, z1, row0, col0, refined);
  __syncthreads();
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* attn, const scalar_t* value,
                               Params<at::opmath_type<scalar_t>> p, Shape s,
                               scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t* maps = cuda::dynamic_shared<acc_t>();
  acc_t* z1 = maps + s.heads * (s.rows + 2) * (s.cols + 2);
  acc_t* refined = z1 + s.hidden * (s.rows + 2) * (s.cols + 2);
  acc_t* product = refined + s.heads * s.rows * s.cols;  // (H, rows, d)
  const int64_t b = blockIdx.x / s.tiles;
  const int64_t row0 = (blockIdx.x % s.tiles) * int64_t(s.rows);
  attn += b * s.heads * s.n * s.n;
  value += b * s.heads * s.n * s.dims;
  const int outputs = s.heads * s.rows * s.dims;
  for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
    product[idx] = acc_t(0);
  }
  for (int64_t col0 = 0; col0 < s.n; col0 += s.cols) {
    refined_tile(attn, p, s, row0, col0, maps, z1, refined);
    for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
      const int64_t k = idx % s.dims;
      const int i = (idx / s.dims) % s.rows;
      const int64_t h = idx / (s.dims * s.rows);
      const acc_t* m = refined + (h * s.rows + i) * s.cols;
      const scalar_t* v = value + (h * s.n + col0) * s.dims + k;
      const int width =
          static_cast<int>(s.n - col0 < s.cols ? s.n - col0 : s.cols);
      acc_t sum = acc_t(0);
      for (int j = 0; j < width; ++j) {
        sum += m[j] * static_cast<acc_t>(v[j * s.dims]);
      }
      product[idx] += sum;
    }
    __syncthreads();
  }
  for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
    const int64_t k = idx % s.dims;
    const int i = (idx / s.dims) % s.rows;
    const int64_t h = idx / (s.dims * s.rows);
    if (row0 + i < s.n) {
      out[((b * s.heads + h) * s.n + row0 + i) * s.dims + k] =
          static_cast<scalar_t>(product[idx]);
    }
  }
}

// dL/dV for a tile of key columns, down all query rows.
template <typename scalar_t>
__global__ void backward_value_kernel(const scalar_t* attn,
                                      const scalar_t* grad_out,
                                      Params<at::opmath_type<scalar_t>> p,
                                      Shape s, scalar_t* grad_value) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t* maps = cuda::dynamic_shared<acc_t>();
  acc_t* z1 = maps + s.heads * (s.rows + 2) * (s.cols + 2);
  acc_t* refined = z1 + s.hidden * (s.rows + 2) * (s.cols + 2);
  acc_t* sums = refined + s.heads * s.rows * s.cols;  // (H, cols, d)
  const int64_t b = blockIdx.x / s.tiles;
  const int64_t col0 = (blockIdx.x % s.tiles) * int64_t(s.cols);
  attn += b * s.heads * s.n * s.n;
  grad_out += b * s.heads * s.n * s.dims;
  const int outputs = s.heads * s.cols * s.dims;
  for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
    sums[idx] = acc_t(0);
  }
  for (int64_t row0 = 0; row0 < s.n; row0 += s.rows) {
    refined_tile(attn, p, s, row0, col0, maps, z1, refined);
    const int height =
        static_cast<int>(s.n - row0 < s.rows ? s.n - row0 : s.rows);
    for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
      const int64_t k = idx % s.dims;
      const int j = (idx / s.dims) % s.cols;
      const int64_t h = idx / (s.dims * s.cols);
      const acc_t* m = refined + h * s.rows * s.cols + j;
      const scalar_t* g = grad_out + (h * s.n + row0) * s.dims + k;
      acc_t sum = acc_t(0);
      for (int i = 0; i < height; ++i) {
        sum += m[i * s.cols] * static_cast<acc_t>(g[i * s.dims]);
      }
      sums[idx] += sum;
    }
    __syncthreads();
  }
  for (int idx = threadIdx.x; idx < outputs; idx += blockDim.x) {
    const int64_t k = idx % s.dims;
    const int j = (idx / s.dims) % s.cols;
    const int64_t h = idx / (s.dims * s.cols);
    if (col0 + j < s.n) {
      grad_value[((b * s.heads + h) * s.n + col0 + j) * s.dims + k] =
          static_cast<scalar_t>(sums[idx]);
    }
  }
}

template <typename scalar_t>
__global__ void backward_rows_kernel(const scalar_t* attn,
                                     const scalar_t* value,
                                     const scalar_t* grad_out,
                                     Params<at::opmath_type<scalar_t>> p,
                                     Shape s, scalar_t* grad_attn,
                                     Grads<at::opmath_type<scalar_t>> grads) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t H = s.heads, E = s.hidden, n = s.n;
  const int rows2 = s.rows + 4, cols2 = s.cols + 4;
  const int rows1 = s.rows + 2, cols1 = s.cols + 2;
  const int plane2 = rows2 * cols2, plane1 = rows1 * cols1;
  const int own = s.rows * s.cols;
  acc_t* maps = cuda::dynamic_shared<acc_t>();  // (H, rows2, cols2)
  acc_t* z1 = maps + H * plane2;                       // (E, rows2, cols2)
  acc_t* z2 = z1 + E * plane2;                         // (E, rows1, cols1)
  acc_t* grad_z2 = z2 + E * plane1;                    // (E, rows1, cols1)
  acc_t* grad_m = grad_z2 + E * plane1;                // (H, rows1, cols1)
  acc_t* grad_z1 = grad_m + H * plane1;                // (E, rows, cols)
  acc_t* g_w_expand = grad_z1 + E * own;               // (E, H)
  acc_t* g_w_reduce = g_w_expand + E * H;              // (H, E)
  acc_t* g_w_depthwise = g_w_reduce + H * E;           // (E, 9)
  acc_t* g_b_expand = g_w_depthwise + E * ra::kTaps;   // (E)
  acc_t* g_b_depthwise = g_b_expand + E;               // (E)
  acc_t* g_b_reduce = g_b_depthwise + E;               // (H)
  acc_t* g_alpha = g_b_reduce + H;                     // (H)
  const int num_params = E * H * 2 + E * (ra::kTaps + 2) + H * 2;

  const int64_t b = blockIdx.x / s.tiles;
  const int64_t row0 = (blockIdx.x % s.tiles) * int64_t(s.rows);
  attn += b * H * n * n;
  value += b * H * n * s.dims;
  grad_out += b * H * n * s.dims;
  grad_attn += b * H * n * n;
  for (int idx = threadIdx.x; idx < num_params; idx += blockDim.x) {
    g_w_expand[idx] = acc_t(0);
  }

  for (int64_t col0 = 0; col0 < n; col0 += s.cols) {
    // Map (row0 - 2 + i, col0 - 2 + j) is at (i, j) of maps and z1.
    load_maps(attn, s, row0 - 2, col0 - 2, rows2, cols2, maps);
    __syncthreads();
    expand_tile(p, s, maps, rows2, cols2, z1);
    __syncthreads();
    // Map (row0 - 1 + i, col0 - 1 + j) is at (i, j) of the one-halo tiles.
    for (int idx = threadIdx.x; idx < E * plane1; idx += blockDim.x) {
      const int64_t e = idx / plane1;
      const int i = (idx % plane1) / cols1, j = idx % cols1;
      const int64_t row = row0 - 1 + i, col = col0 - 1 + j;
      z2[idx] = in_map(row, col, n) ? depthwise_at(p, z1, e, i + 1, j + 1,
                                                   rows2, cols2, row, col, n)
                                    : acc_t(0);
    }
    for (int idx = threadIdx.x; idx < H * plane1; idx += blockDim.x) {
      const int64_t h = idx / plane1;
      const int i = (idx % plane1) / cols1, j = idx % cols1;
      const int64_t row = row0 - 1 + i, col = col0 - 1 + j;
      acc_t sum = acc_t(0);
      if (in_map(row, col, n)) {
        const scalar_t* g = grad_out + (h * n + row) * s.dims;
        const scalar_t* v = value + (h * n + col) * s.dims;
        for (int64_t k = 0; k < s.dims; ++k) {
          sum += static_cast<acc_t>(g[k]) * static_cast<acc_t>(v[k]);
        }
      }
      grad_m[idx] = sum;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < E * plane1; idx += blockDim.x) {
      const int64_t e = idx / plane1;
      const int pos = idx % plane1;
      acc_t sum = acc_t(0);
      for (int64_t h = 0; h < H; ++h) {
        sum += p.w_reduce[h * E + e] * grad_m[h * plane1 + pos];
      }
      // Zero outside the map too: grad_m and z2 are zero there.
      grad_z2[idx] = ra::relu6_backward(z2[idx], sum);
    }
    __syncthreads();
    // z1's gradient at the tile's own positions (the transposed conv).
    for (int idx = threadIdx.x; idx < E * own; idx += blockDim.x) {
      const int64_t e = idx / own;
      const int i = (idx % own) / s.cols, j = idx % s.cols;
      const int64_t row = row0 + i, col = col0 + j;
      acc_t sum = acc_t(0);
      if (in_map(row, col, n)) {
        for (int dy = -ra::kHalo; dy <= ra::kHalo; ++dy) {
          for (int dx = -ra::kHalo; dx <= ra::kHalo; ++dx) {
            sum += p.w_depthwise[e * ra::kTaps + ra::tap_index(dy, dx)] *
                   grad_z2[(e * rows1 + i + 1 - dy) * cols1 + j + 1 - dx];
          }
        }
        sum = ra::relu6_backward(z1[(e * rows2 + i + 2) * cols2 + j + 2],
                                 sum);
      }
      grad_z1[idx] = sum;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < H * own; idx += blockDim.x) {
      const int64_t h = idx / own;
      const int i = (idx % own) / s.cols, j = idx % s.cols;
      const int64_t row = row0 + i, col = col0 + j;
      if (!in_map(row, col, n)) continue;
      acc_t sum = p.alpha[h] * grad_m[(h * rows1 + i + 1) * cols1 + j + 1];
      for (int64_t e = 0; e < E; ++e) {
        sum += p.w_expand[e * H + h] * grad_z1[e * own + i * s.cols + j];
      }
      grad_attn[(h * n + row) * n + col] = static_cast<scalar_t>(sum);
    }
    // The parameters' gradients over the tile's own positions, one thread
    // per parameter (out-of-map positions contribute zeros).
    for (int idx = threadIdx.x; idx < num_params; idx += blockDim.x) {
      acc_t sum = acc_t(0);
      for (int pos = 0; pos < own; ++pos) {
        const int i = pos / s.cols, j = pos % s.cols;
        const int at2 = (i + 2) * cols2 + j + 2;
        const int at1 = (i + 1) * cols1 + j + 1;
        int q = idx;
        if (q < E * H) {  // w_expand[e, h]: grad_z1[e] * A[h]
          sum += grad_z1[(q / H) * own + pos] * maps[(q % H) * plane2 + at2];
          continue;
        }
        q -= E * H;
        if (q < H * E) {  // w_reduce[h, e]: grad_m[h] * h2[e]
          sum += grad_m[(q / E) * plane1 + at1] *
                 ra::relu6(z2[(q % E) * plane1 + at1]);
          continue;
        }
        q -= H * E;
        if (q < E * ra::kTaps) {  // w_depthwise[e, tap]: grad_z2[e] * h1
          const int64_t e = q / ra::kTaps;
          const int tap = q % ra::kTaps;
          const int dy = tap / ra::kKernelSize - ra::kHalo;
          const int dx = tap % ra::kKernelSize - ra::kHalo;
          sum += grad_z2[e * plane1 + at1] *
                 hidden_at(z1, e, i + 2 + dy, j + 2 + dx, rows2, cols2,
                           row0 + i + dy, col0 + j + dx, n);
          continue;
        }
        q -= E * ra::kTaps;
        if (q < E) {  // b_expand
          sum += grad_z1[q * own + pos];
          continue;
        }
        q -= E;
        if (q < E) {  // b_depthwise
          sum += grad_z2[q * plane1 + at1];
          continue;
        }
        q -= E;
        if (q < H) {  // b_reduce
          sum += grad_m[q * plane1 + at1];
          continue;
        }
        q -= H;  // alpha[h]: grad_m[h] * A[h]
        sum += grad_m[q * plane1 + at1] * maps[q * plane2 + at2];
      }
      g_w_expand[idx] += sum;
    }
    __syncthreads();
  }
  // Parameters in the order of the shared block above.
  for (int idx = threadIdx.x; idx < num_params; idx += blockDim.x) {
    int q = idx;
    acc_t* dst;
    if (q < E * H) {
      dst = grads.w_expand + q;
    } else if ((q -= E * H) < H * E) {
      dst = grads.w_reduce + q;
    } else if ((q -= H * E) < E * ra::kTaps) {
      dst = grads.w_depthwise + q;
    } else if ((q -= E * ra::kTaps) < E) {
      dst = grads.b_expand + q;
    } else if ((q -= E) < E) {
      dst = grads.b_depthwise + q;
    } else if ((q -= E) < H) {
      dst = grads.b_reduce + q;
    } else {
      dst = grads.alpha + (q - H);
    }
    atomicAdd(dst, g_w_expand[idx]);
  }
}

}  // namespace refined_attention
}  // namespace mmscalable
