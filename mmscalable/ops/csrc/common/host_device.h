// Copyright (c) mmscalable contributors. All rights reserved.
//
// MMSCALABLE_HOST_DEVICE marks the per-element and per-tile arithmetic that
// the CPU and CUDA kernels share (index maps, halos, edge padding, fused
// epilogues). The `*_utils.h` headers define it once; the CPU kernels call it
// from C++ and the CUDA kernels from device code, so the CPU tests exercise
// the same arithmetic that runs on the GPU.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MMSCALABLE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MMSCALABLE_HOST_DEVICE inline
#endif
