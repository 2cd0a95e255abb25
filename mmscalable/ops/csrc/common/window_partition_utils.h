// Copyright (c) mmscalable contributors. All rights reserved.
//
// Declarations shared by the window partition front end
// (pytorch/window_partition.cpp) and its device implementations.
//
// Layout conventions (all tensors contiguous):
//   feature map : (B, H, W, C)                  channels last
//   windows     : (B * nH * nW, ws * ws, C)
//   with nH = ceil(H / ws) and nW = ceil(W / ws).
// Windows are ordered row-major over (batch, window row, window column) and
// the tokens of one window row-major over (row, column). Positions of the
// padded map (Hp = nH * ws, Wp = nW * ws) that lie outside H x W are zero in
// the windows and are dropped when reversing.
#pragma once

#include <ATen/ATen.h>

namespace mmscalable {

// Fills `windows` (already allocated with the right shape) from `input`.
void window_partition_forward_cpu(const at::Tensor& input, at::Tensor& windows,
                                  int64_t window_size);

// Fills `output` (B, H, W, C) from `windows`, dropping the padded positions.
void window_reverse_forward_cpu(const at::Tensor& windows, at::Tensor& output,
                                int64_t window_size);

#ifdef WITH_CUDA
void window_partition_forward_cuda(const at::Tensor& input,
                                   at::Tensor& windows, int64_t window_size);

void window_reverse_forward_cuda(const at::Tensor& windows, at::Tensor& output,
                                 int64_t window_size);
#endif

// Number of windows needed to cover `length` positions (ceil division).
inline int64_t num_windows_along(int64_t length, int64_t window_size) {
  return (length + window_size - 1) / window_size;
}

}  // namespace mmscalable
