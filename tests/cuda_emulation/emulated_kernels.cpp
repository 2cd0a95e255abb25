// Copyright (c) mmscalable contributors. All rights reserved.
//
// The project's CUDA kernels, compiled from their headers by the host
// compiler and launched through the CPU emulation of cuda_emulation.h, as
// the .cu files launch them on a GPU (same launch planning, with the
// device's limits as arguments: a smaller shared-memory budget forces small
// tiles, a smaller SM count longer grid-stride loops). Test code only.
//
// Every result is written into a buffer with NaN guards on both sides,
// checked after the launch: a write past either end fails the call.
#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_emulation.h"

#ifdef MMSCALABLE_EMULATION_WITHOUT_BARRIERS
// The kernels as they would run with every barrier removed (the tests check
// that this fails them).
#define __syncthreads() ((void)0)
#endif

#include "common/cuda/group_mix_cuda_kernel.cuh"
#include "common/cuda/refined_attention_cuda_kernel.cuh"
#include "common/cuda/window_partition_cuda_kernel.cuh"

namespace {

constexpr int64_t kGuardElements = 64;

// A tensor of `sizes` inside a NaN-filled buffer with guards around it.
struct Guarded {
  at::Tensor buffer;
  at::Tensor tensor;
};

Guarded guarded_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (int64_t size : sizes) numel *= size;
  at::Tensor buffer = at::full({numel + 2 * kGuardElements},
                               std::numeric_limits<double>::quiet_NaN(),
                               options);
  return {buffer, buffer.narrow(0, kGuardElements, numel).view(sizes)};
}

void check_guards(const Guarded& out, const char* kernel) {
  const int64_t n = out.buffer.numel();
  const bool intact =
      out.buffer.narrow(0, 0, kGuardElements).isnan().all().item<bool>() &&
      out.buffer.narrow(0, n - kGuardElements, kGuardElements)
          .isnan()
          .all()
          .item<bool>();
  TORCH_CHECK(intact, kernel, " wrote outside its output");
}

template <typename Kernel, typename... Args>
void run(const char* name, int64_t blocks, int threads, int64_t shared_bytes,
         int64_t seed, Kernel kernel, Args... args) {
  try {
    cuda_emulation::launch(name, dim3(static_cast<unsigned>(blocks)),
                           dim3(threads), static_cast<size_t>(shared_bytes),
                           static_cast<uint64_t>(seed), kernel, args...);
  } catch (const cuda_emulation::LaunchError& error) {
    TORCH_CHECK(false, error.what());
  }
}

// --------------------------------------------------------------------------
// Refined attention
// --------------------------------------------------------------------------

namespace ra = mmscalable::refined_attention;

ra::CudaLaunchPlan plan_or_fail(ra::CudaKernel kernel, const at::Tensor& attn,
                                const at::Tensor& value,
                                const at::Tensor& w_expand,
                                int64_t element_size, int64_t shared_limit) {
  const auto plan = ra::plan_cuda_launch(
      kernel, attn.size(0), attn.size(1), w_expand.size(0), attn.size(2),
      value.size(3), element_size, shared_limit);
  TORCH_CHECK(plan.rows > 0, "no tile fits ", shared_limit, " bytes");
  return plan;
}

ra::Shape shape_of(const at::Tensor& attn, const at::Tensor& value,
                   const at::Tensor& w_expand, const ra::CudaLaunchPlan& p) {
  return {attn.size(1), w_expand.size(0), attn.size(2), value.size(3),
          p.rows,       p.cols,           p.tiles_per_image};
}

// The launch plan of kernel "forward", "backward_rows" or "backward_value":
// rows, cols, tiles per image, blocks, shared bytes.
std::vector<int64_t> refined_attention_plan(const std::string& kernel,
                                            int64_t batch, int64_t heads,
                                            int64_t hidden, int64_t n,
                                            int64_t dims, int64_t element_size,
                                            int64_t shared_limit) {
  auto which = ra::CudaKernel::kBackwardValue;
  if (kernel == "forward") which = ra::CudaKernel::kForward;
  if (kernel == "backward_rows") which = ra::CudaKernel::kBackwardRows;
  const auto plan = ra::plan_cuda_launch(which, batch, heads, hidden, n, dims,
                                         element_size, shared_limit);
  return {plan.rows, plan.cols, plan.tiles_per_image, plan.blocks,
          plan.shared_bytes};
}

at::Tensor refined_attention_forward(const at::Tensor& attn,
                                     const at::Tensor& value,
                                     std::vector<at::Tensor> params,
                                     int64_t shared_limit, int64_t seed) {
  TORCH_CHECK(params.size() == 7, "seven folded parameter tensors");
  Guarded out = guarded_empty(value.sizes(), value.options());
  if (value.numel() == 0) return out.tensor;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, attn.scalar_type(), "emulated_forward", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto plan =
            plan_or_fail(ra::CudaKernel::kForward, attn, value, params[0],
                         sizeof(acc_t), shared_limit);
        run("refined_attention forward_kernel", plan.blocks, ra::kCudaThreads,
            plan.shared_bytes, seed, ra::forward_kernel<scalar_t>,
            attn.const_data_ptr<scalar_t>(), value.const_data_ptr<scalar_t>(),
            ra::folded_refinement<acc_t>(params[0], params[1], params[2],
                                         params[3], params[4], params[5],
                                         params[6]),
            shape_of(attn, value, params[0], plan),
            out.tensor.mutable_data_ptr<scalar_t>());
      });
  check_guards(out, "refined_attention forward_kernel");
  return out.tensor;
}

// grad_attn, grad_value and the seven parameters' gradients; `which`
// selects the kernels: "rows" (grad_attn and the parameters), "value"
// (grad_value) or "both" (the others stay NaN).
std::vector<at::Tensor> refined_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& attn,
    const at::Tensor& value, std::vector<at::Tensor> params,
    int64_t shared_limit, int64_t seed, const std::string& which) {
  TORCH_CHECK(params.size() == 7, "seven folded parameter tensors");
  Guarded grad_attn = guarded_empty(attn.sizes(), attn.options());
  Guarded grad_value = guarded_empty(value.sizes(), value.options());
  std::vector<Guarded> param_grads;
  for (const auto& param : params) {
    param_grads.push_back(guarded_empty(param.sizes(), param.options()));
    param_grads.back().tensor.zero_();  // the launcher's at::zeros
  }
  const bool rows = which != "value", values = which != "rows";
  if (attn.numel() > 0 && value.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, attn.scalar_type(), "emulated_backward",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          const auto p = ra::folded_refinement<acc_t>(
              params[0], params[1], params[2], params[3], params[4],
              params[5], params[6]);
          if (rows) {
            const auto plan =
                plan_or_fail(ra::CudaKernel::kBackwardRows, attn, value,
                             params[0], sizeof(acc_t), shared_limit);
            const ra::Grads<acc_t> grads{
                param_grads[0].tensor.mutable_data_ptr<acc_t>(),
                param_grads[1].tensor.mutable_data_ptr<acc_t>(),
                param_grads[2].tensor.mutable_data_ptr<acc_t>(),
                param_grads[3].tensor.mutable_data_ptr<acc_t>(),
                param_grads[4].tensor.mutable_data_ptr<acc_t>(),
                param_grads[5].tensor.mutable_data_ptr<acc_t>(),
                param_grads[6].tensor.mutable_data_ptr<acc_t>()};
            run("refined_attention backward_rows_kernel", plan.blocks,
                ra::kCudaThreads, plan.shared_bytes, seed,
                ra::backward_rows_kernel<scalar_t>,
                attn.const_data_ptr<scalar_t>(),
                value.const_data_ptr<scalar_t>(),
                grad_out.const_data_ptr<scalar_t>(), p,
                shape_of(attn, value, params[0], plan),
                grad_attn.tensor.mutable_data_ptr<scalar_t>(), grads);
          }
          if (values) {
            const auto plan =
                plan_or_fail(ra::CudaKernel::kBackwardValue, attn, value,
                             params[0], sizeof(acc_t), shared_limit);
            run("refined_attention backward_value_kernel", plan.blocks,
                ra::kCudaThreads, plan.shared_bytes, seed,
                ra::backward_value_kernel<scalar_t>,
                attn.const_data_ptr<scalar_t>(),
                grad_out.const_data_ptr<scalar_t>(), p,
                shape_of(attn, value, params[0], plan),
                grad_value.tensor.mutable_data_ptr<scalar_t>());
          }
        });
  } else {
    grad_attn.tensor.zero_();
    grad_value.tensor.zero_();
  }
  check_guards(grad_attn, "refined_attention backward_rows_kernel");
  check_guards(grad_value, "refined_attention backward_value_kernel");
  std::vector<at::Tensor> result{grad_attn.tensor, grad_value.tensor};
  for (const auto& grad : param_grads) {
    check_guards(grad, "refined_attention backward_rows_kernel");
    result.push_back(grad.tensor);
  }
  return result;
}

// --------------------------------------------------------------------------
// Group-Mix depthwise conv
// --------------------------------------------------------------------------

namespace gm = mmscalable::group_mix;

gm::Shape gm_shape(const at::Tensor& input) {
  return {input.size(0), input.size(1), input.size(2), input.size(3),
          input.size(4)};
}

gm::TokenStrides gm_strides(const at::Tensor& input) {
  return {input.stride(0), input.stride(1), input.stride(2), input.stride(3),
          input.stride(4)};
}

// channels per tile of the plan with `shared_limit` bytes.
int64_t group_mix_tile_channels(const at::Tensor& input,
                                std::vector<int64_t> kernel_sizes,
                                std::vector<int64_t> group_channels,
                                int64_t shared_limit) {
  const auto table =
      gm::make_table(kernel_sizes, group_channels, input.size(4));
  const int64_t element = input.scalar_type() == at::kDouble ? 8 : 4;
  return gm::plan_tiling(gm_shape(input), table, element, shared_limit)
      .channels;
}

at::Tensor group_mix_forward(const at::Tensor& input, const at::Tensor& weight,
                             const c10::optional<at::Tensor>& bias,
                             std::vector<int64_t> kernel_sizes,
                             std::vector<int64_t> group_channels,
                             bool hardswish, int64_t shared_limit,
                             int64_t seed) {
  const auto table =
      gm::make_table(kernel_sizes, group_channels, input.size(4));
  const gm::Shape shape = gm_shape(input);
  Guarded out = guarded_empty(
      {shape.streams * shape.batch, shape.channels, shape.height, shape.width},
      input.options());
  if (out.tensor.numel() == 0) return out.tensor;
  const at::Tensor weight_contig = weight.contiguous();
  const at::Tensor bias_contig =
      bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "emulated_group_mix",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const gm::Tiling t =
            gm::plan_tiling(shape, table, sizeof(acc_t), shared_limit);
        run("group_mix forward_kernel", gm::tile_blocks(t), gm::kThreads,
            gm::forward_shared_elements(t) * sizeof(acc_t), seed,
            gm::forward_kernel<scalar_t>, input.const_data_ptr<scalar_t>(),
            gm_strides(input), weight_contig.const_data_ptr<scalar_t>(),
            bias_contig.defined() ? bias_contig.const_data_ptr<scalar_t>()
                                  : static_cast<const scalar_t*>(nullptr),
            table, shape, t, hardswish,
            out.tensor.mutable_data_ptr<scalar_t>());
      });
  check_guards(out, "group_mix forward_kernel");
  return out.tensor;
}

std::vector<at::Tensor> group_mix_backward(const at::Tensor& grad_output,
                                           const at::Tensor& input,
                                           const at::Tensor& weight,
                                           std::vector<int64_t> kernel_sizes,
                                           std::vector<int64_t> group_channels,
                                           int64_t shared_limit, int64_t seed) {
  const auto table =
      gm::make_table(kernel_sizes, group_channels, input.size(4));
  const gm::Shape shape = gm_shape(input);
  Guarded grad_input = guarded_empty(input.sizes(), input.options());
  Guarded grad_weight = guarded_empty(weight.sizes(), weight.options());
  if (input.numel() == 0) {
    grad_weight.tensor.zero_();
    return {grad_input.tensor, grad_weight.tensor};
  }
  const at::Tensor grad_contig = grad_output.contiguous();
  const at::Tensor weight_contig = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(),
      "emulated_group_mix_backward", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const gm::Tiling t =
            gm::plan_tiling(shape, table, sizeof(acc_t), shared_limit);
        run("group_mix input_grad_kernel", gm::tile_blocks(t), gm::kThreads,
            gm::input_grad_shared_elements(t) * sizeof(acc_t), seed,
            gm::input_grad_kernel<scalar_t>,
            grad_contig.const_data_ptr<scalar_t>(),
            weight_contig.const_data_ptr<scalar_t>(), table, shape, t,
            grad_input.tensor.mutable_data_ptr<scalar_t>());
        const int64_t num_weights = weight.numel();
        const int64_t slots = gm::weight_grad_slots(t);
        Guarded partials = guarded_empty(
            {slots * num_weights},
            input.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
        run("group_mix weight_grad_kernel", t.channel_tiles * slots,
            gm::kThreads, gm::weight_grad_shared_elements(t) * sizeof(acc_t),
            seed, gm::weight_grad_kernel<scalar_t>,
            grad_contig.const_data_ptr<scalar_t>(),
            input.const_data_ptr<scalar_t>(), gm_strides(input), table, shape,
            t, slots, num_weights, partials.tensor.mutable_data_ptr<acc_t>());
        check_guards(partials, "group_mix weight_grad_kernel");
        run("group_mix reduce_partials_kernel",
            gm::reduce_blocks(num_weights), gm::kThreads, 0, seed,
            gm::reduce_partials_kernel<scalar_t>,
            partials.tensor.const_data_ptr<acc_t>(), slots, num_weights,
            grad_weight.tensor.mutable_data_ptr<scalar_t>());
      });
  check_guards(grad_input, "group_mix input_grad_kernel");
  check_guards(grad_weight, "group_mix reduce_partials_kernel");
  return {grad_input.tensor, grad_weight.tensor};
}

// --------------------------------------------------------------------------
// Window partition / reverse
// --------------------------------------------------------------------------

namespace wo = mmscalable::window_ops;

template <typename unit_t, typename index_t>
void launch_window(bool partition, const void* src, void* dst,
                   int64_t total_units, int64_t blocks,
                   const wo::WindowGeometry<int64_t>& g64, int64_t seed) {
  const auto g = wo::geometry_as<index_t>(g64);
  if (partition) {
    run("window_partition_kernel", blocks, wo::kWindowThreads, 0, seed,
        wo::window_partition_kernel<unit_t, index_t>,
        static_cast<const unit_t*>(src), static_cast<unit_t*>(dst),
        static_cast<index_t>(total_units), g);
  } else {
    run("window_reverse_kernel", blocks, wo::kWindowThreads, 0, seed,
        wo::window_reverse_kernel<unit_t, index_t>,
        static_cast<const unit_t*>(src), static_cast<unit_t*>(dst),
        static_cast<index_t>(total_units), g);
  }
}

template <typename unit_t>
void launch_window_index(bool partition, const void* src, void* dst,
                         int64_t total_units, int64_t src_units,
                         int64_t blocks, bool force_int64,
                         const wo::WindowGeometry<int64_t>& g, int64_t seed) {
  if (!force_int64 && wo::fits_int32_index(total_units, src_units, blocks)) {
    launch_window<unit_t, int32_t>(partition, src, dst, total_units, blocks, g,
                                   seed);
  } else {
    launch_window<unit_t, int64_t>(partition, src, dst, total_units, blocks, g,
                                   seed);
  }
}

// Partition (`partition`) of a (B, H, W, C) map, or reverse of windows into
// one of `height` x `width`; `max_unit_bytes` caps the unit the launcher
// picks (16 leaves it free), `sm_count` sizes the grid.
at::Tensor window_op(const at::Tensor& src, bool partition,
                     int64_t window_size, int64_t height, int64_t width,
                     int64_t max_unit_bytes, int64_t sm_count,
                     bool force_int64, int64_t seed) {
  const at::Tensor source = src.contiguous();
  const int64_t channels = source.size(-1);
  const int64_t nh = (height + window_size - 1) / window_size;
  const int64_t nw = (width + window_size - 1) / window_size;
  Guarded dst = partition
                    ? guarded_empty({source.size(0) * nh * nw,
                                     window_size * window_size, channels},
                                    source.options())
                    : guarded_empty({source.size(0) / (nh * nw), height,
                                     width, channels},
                                    source.options());
  if (dst.tensor.numel() == 0) return dst.tensor;
  const int64_t element_bytes = source.element_size();
  const int64_t token_bytes = channels * element_bytes;
  int64_t unit_bytes =
      wo::pick_unit_bytes(element_bytes, token_bytes, source.const_data_ptr(),
                          dst.tensor.data_ptr());
  while (unit_bytes > max_unit_bytes && unit_bytes > element_bytes)
    unit_bytes /= 2;
  const wo::WindowGeometry<int64_t> g{height, width, token_bytes / unit_bytes,
                                      window_size, nh, nw};
  const int64_t total_units = dst.tensor.numel() * element_bytes / unit_bytes;
  const int64_t src_units = source.numel() * element_bytes / unit_bytes;
  const int64_t blocks = wo::window_blocks(total_units, sm_count);
  const void* s = source.const_data_ptr();
  void* d = dst.tensor.data_ptr();
  switch (unit_bytes) {
    case 16:
      launch_window_index<uint4>(partition, s, d, total_units, src_units,
                                 blocks, force_int64, g, seed);
      break;
    case 8:
      launch_window_index<uint2>(partition, s, d, total_units, src_units,
                                 blocks, force_int64, g, seed);
      break;
    case 4:
      launch_window_index<uint32_t>(partition, s, d, total_units, src_units,
                                    blocks, force_int64, g, seed);
      break;
    default:
      launch_window_index<uint16_t>(partition, s, d, total_units, src_units,
                                    blocks, force_int64, g, seed);
      break;
  }
  check_guards(dst, partition ? "window_partition_kernel"
                              : "window_reverse_kernel");
  return dst.tensor;
}

// --------------------------------------------------------------------------
// Kernels with known bugs: the emulation must catch each
// --------------------------------------------------------------------------

// Thread 0 leaves before the barrier the others wait at.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

// Writes one element past its dynamic shared memory.
__global__ void shared_overflow_kernel(float* out) {
  float* shared = mmscalable::cuda::dynamic_shared<float>();
  shared[threadIdx.x + 1] = 1.f;
  __syncthreads();
  out[threadIdx.x] = shared[threadIdx.x];
}

// Each thread reads what its neighbour wrote; `barrier` says whether a
// barrier separates the write from the read.
__global__ void neighbour_kernel(float* out, bool barrier) {
  MMSCALABLE_SHARED(float, values, 64);
  values[threadIdx.x] = float(threadIdx.x);
  if (barrier) __syncthreads();
  out[threadIdx.x] = values[(threadIdx.x + 1) % blockDim.x];
}

// Runs one of the kernels above on 64 threads: "divergent", "overflow",
// "neighbour" or "neighbour_without_barrier".
at::Tensor run_faulty_kernel(const std::string& which, int64_t seed) {
  at::Tensor out = at::zeros({64}, at::kFloat);
  float* data = out.mutable_data_ptr<float>();
  if (which == "divergent") {
    run("divergent_barrier_kernel", 1, 64, 0, seed, divergent_barrier_kernel,
        data);
  } else if (which == "overflow") {
    run("shared_overflow_kernel", 1, 64, 64 * sizeof(float), seed,
        shared_overflow_kernel, data);
  } else {
    run("neighbour_kernel", 2, 64, 0, seed, neighbour_kernel, data,
        which == "neighbour");
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mmscalable's CUDA kernels run by a CPU emulation (tests only)";
  m.def("refined_attention_plan", &refined_attention_plan);
  m.def("refined_attention_forward", &refined_attention_forward);
  m.def("refined_attention_backward", &refined_attention_backward);
  m.def("group_mix_tile_channels", &group_mix_tile_channels);
  m.def("group_mix_forward", &group_mix_forward);
  m.def("group_mix_backward", &group_mix_backward);
  m.def("window_op", &window_op);
  m.def("run_faulty_kernel", &run_faulty_kernel);
}
