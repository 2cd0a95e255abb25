// Copyright (c) mmscalable contributors. All rights reserved.
//
// The Python module of the compiled ops, mmscalable._ext. The ops themselves
// are registered with the dispatcher by the front files (TORCH_LIBRARY_*
// blocks in pytorch/<op>.cpp) when this module's shared library is loaded,
// and are called as torch.ops.mmscalable.<op>; the module only tells how the
// library was built.
#include <torch/extension.h>

namespace mmscalable {

// Whether this build has the CUDA kernels (FORCE_CUDA=1 or a visible GPU at
// build time); the Python side uses it to route CUDA tensors.
bool compiled_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace mmscalable

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() =
      "Compiled ops of mmscalable; the ops are torch.ops.mmscalable.<op>.";
  m.def("compiled_with_cuda", &mmscalable::compiled_with_cuda,
        "Whether the CUDA kernels were compiled in");
}
