// Copyright (c) mmscalable contributors. All rights reserved.
//
// The single Python module of the compiled ops, mmscalable._ext.
#include <torch/extension.h>

namespace mmscalable {

at::Tensor window_partition_forward(const at::Tensor& input,
                                    int64_t window_size);

at::Tensor window_reverse_forward(const at::Tensor& windows,
                                  int64_t window_size, int64_t height,
                                  int64_t width);

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
  m.doc() = "Compiled ops of mmscalable (window partition / reverse).";
  m.def("window_partition_forward", &mmscalable::window_partition_forward,
        "Split a (B, H, W, C) map into zero-padded windows of shape "
        "(B * nH * nW, window_size * window_size, C)",
        py::arg("input"), py::arg("window_size"));
  m.def("window_reverse_forward", &mmscalable::window_reverse_forward,
        "Merge (B * nH * nW, window_size * window_size, C) windows back "
        "into a (B, H, W, C) map, cropping the padding",
        py::arg("windows"), py::arg("window_size"), py::arg("height"),
        py::arg("width"));
  m.def("compiled_with_cuda", &mmscalable::compiled_with_cuda,
        "Whether the CUDA kernels were compiled in");
}
