// Copyright (c) mmscalable contributors. All rights reserved.
//
// What the kernel headers of this folder (*_cuda_kernel.cuh) need beyond
// CUDA's builtins, so that their bodies compile with nvcc for the GPU and
// with the host compiler in the tests, where an emulation of CUDA's
// execution model (tests/cuda_emulation/cuda_emulation.h, included first)
// provides threadIdx, __syncthreads(), shared memory and atomics:
//
//   mmscalable::cuda::dynamic_shared<T>()  the launch's dynamic shared
//                                          memory, 16-byte aligned (it is
//                                          read as double and as uint4)
//   MMSCALABLE_SHARED(T, name, count)      a static shared array of the block
//
// The headers include nothing CUDA-only (no ATen/cuda, no cuda_runtime
// calls): launch configuration and device queries stay in the .cu files.
#pragma once

#if defined(__CUDACC__)

namespace mmscalable {
namespace cuda {

template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char dynamic_shared_bytes[];
  return reinterpret_cast<T*>(dynamic_shared_bytes);
}

}  // namespace cuda
}  // namespace mmscalable

#define MMSCALABLE_SHARED(T, name, count) __shared__ T name[count]

#elif !defined(MMSCALABLE_CUDA_EMULATION)
#error "CUDA kernel headers compile with nvcc, or on the host after the " \
       "test emulation (tests/cuda_emulation/cuda_emulation.h)"
#endif
