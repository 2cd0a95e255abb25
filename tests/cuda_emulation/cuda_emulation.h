// Copyright (c) mmscalable contributors. All rights reserved.
//
// CUDA's execution model on the CPU, for running the project's CUDA kernels
// (mmscalable/ops/csrc/common/cuda/*_cuda_kernel.cuh) from their own source
// in the tests. Test code only: the package's builds never include it.
//
// What it provides, before the kernel headers are included:
//   - threadIdx, blockIdx, blockDim, gridDim, dim3, uint3, uint2, uint4;
//   - __global__, __device__, __host__, __forceinline__ (nothing / inline);
//   - __syncthreads(): the block's barrier;
//   - shared memory: mmscalable::cuda::dynamic_shared<T>() (the launch's
//     dynamic bytes) and MMSCALABLE_SHARED(T, name, count) (static arrays),
//     per block;
//   - atomicAdd for float and double.
//
// How a launch runs (launch() below): blocks one after another; in a block,
// every thread is a fiber (ucontext) that runs until it reaches
// __syncthreads() or returns. Between two barriers the threads run one after
// another in a shuffled order (seeded), so a thread that reads shared memory
// another thread writes in the same phase sees it unwritten for most
// orders: a missing barrier changes the result. Shared memory starts every
// block filled with 0xff bytes (NaN in every floating type) and lies between
// guard bytes that are checked after every phase, so an unwritten read or a
// halo one element too wide shows in the result, and a write past an end
// fails the launch. A barrier that some threads of a block never reach (a
// deadlock on a GPU) fails the launch with the kernel's name.
//
// What it cannot show: scheduling across blocks, coalescing, bank conflicts,
// occupancy and speed.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.h is for the host compiler only"
#endif

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#define MMSCALABLE_CUDA_EMULATION 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1,
                 unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

struct alignas(8) uint2 {
  unsigned int x, y;
};

struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};

// The running thread's coordinates; set by the scheduler before it switches
// to a fiber (one fiber runs at a time on the launching OS thread).
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

namespace cuda_emulation {

// Bytes on each side of a shared-memory allocation that must stay untouched.
constexpr size_t kGuardBytes = 64;
constexpr unsigned char kPoison = 0xff;
constexpr size_t kFiberStackBytes = 256 * 1024;

class LaunchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One allocation of shared memory with guard bytes around it.
class SharedBuffer {
 public:
  explicit SharedBuffer(size_t bytes)
      : bytes_(bytes), storage_(bytes + 2 * kGuardBytes) {
    poison();
  }
  unsigned char* data() { return storage_.data() + kGuardBytes; }
  void poison() { std::fill(storage_.begin(), storage_.end(), kPoison); }
  bool guards_intact() const {
    const auto untouched = [](const unsigned char* begin, size_t n) {
      return std::all_of(begin, begin + n,
                         [](unsigned char b) { return b == kPoison; });
    };
    return untouched(storage_.data(), kGuardBytes) &&
           untouched(storage_.data() + kGuardBytes + bytes_, kGuardBytes);
  }

 private:
  size_t bytes_;
  // 64-byte aligned by the allocator for this size; the data begins one
  // guard (64 bytes) later, so every type's alignment holds.
  std::vector<unsigned char> storage_;
};

// A fiber stack with an inaccessible page below it: an overflow faults.
class FiberStack {
 public:
  FiberStack() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    total_ = kFiberStackBytes + page;
    void* base = mmap(nullptr, total_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw LaunchError("cannot map a fiber stack");
    mprotect(base, page, PROT_NONE);
    base_ = static_cast<char*>(base);
    stack_ = base_ + page;
  }
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;
  ~FiberStack() { munmap(base_, total_); }
  char* stack() { return stack_; }

 private:
  char* base_ = nullptr;
  char* stack_ = nullptr;
  size_t total_ = 0;
};

enum class FiberState { kRunnable, kAtBarrier, kDone };

struct Fiber {
  ucontext_t context;
  FiberState state = FiberState::kRunnable;
  uint3 index{0, 0, 0};
};

// Runs one launch; the state the device builtins read while it runs.
class Launch {
 public:
  Launch(std::string name, dim3 grid, dim3 block, size_t dynamic_bytes,
         uint64_t seed)
      : name_(std::move(name)),
        grid_(grid),
        block_(block),
        dynamic_(dynamic_bytes ? std::make_unique<SharedBuffer>(dynamic_bytes)
                                : nullptr),
        rng_(seed) {}

  void run(const std::function<void()>& body) {
    const size_t threads = size_t(block_.x) * block_.y * block_.z;
    if (threads == 0 || threads > 1024)
      throw LaunchError(name_ + ": a block has " + std::to_string(threads) +
                        " threads; CUDA allows 1 to 1024");
    if (grid_.y > 65535 || grid_.z > 65535)
      throw LaunchError(name_ + ": grid (" + std::to_string(grid_.x) + ", " +
                        std::to_string(grid_.y) + ", " +
                        std::to_string(grid_.z) +
                        ") exceeds 65535 blocks in y or z");
    body_ = &body;
    fibers_.resize(threads);
    while (stacks_.size() < threads) stacks_.emplace_back(new FiberStack());
    gridDim = grid_;
    blockDim = block_;
    Launch* const outer = current();
    current() = this;
    try {
      for (unsigned z = 0; z < grid_.z; ++z)
        for (unsigned y = 0; y < grid_.y; ++y)
          for (unsigned x = 0; x < grid_.x; ++x) run_block({x, y, z});
    } catch (...) {
      current() = outer;
      throw;
    }
    current() = outer;
  }

  // The running launch (nullptr outside one).
  static Launch*& current() {
    static thread_local Launch* launch = nullptr;
    return launch;
  }

  void barrier() {
    Fiber& fiber = fibers_[running_];
    fiber.state = FiberState::kAtBarrier;
    swapcontext(&fiber.context, &scheduler_);
  }

  unsigned char* dynamic_shared() {
    if (!dynamic_) {
      // No exception may cross a fiber's frames: fail after the phase.
      error_ = name_ + " uses dynamic shared memory but was launched with "
                       "none";
      static thread_local unsigned char nothing[kGuardBytes];
      std::fill(nothing, nothing + kGuardBytes, kPoison);
      return nothing;
    }
    return dynamic_->data();
  }

  unsigned char* static_shared(const void* site, size_t bytes) {
    auto found = statics_.find(site);
    if (found == statics_.end()) {
      found = statics_.emplace(site, std::make_unique<SharedBuffer>(bytes))
                  .first;
    }
    return found->second->data();
  }

 private:
  static void fiber_main() {
    Launch* launch = current();
    (*launch->body_)();
    launch->fibers_[launch->running_].state = FiberState::kDone;
    // Returning resumes uc_link, the scheduler.
  }

  void run_block(uint3 block_index) {
    blockIdx = block_index;
    if (dynamic_) dynamic_->poison();
    for (auto& entry : statics_) entry.second->poison();
    std::vector<size_t> order(fibers_.size());
    std::iota(order.begin(), order.end(), 0);
    for (size_t t = 0; t < fibers_.size(); ++t) {
      Fiber& fiber = fibers_[t];
      fiber.state = FiberState::kRunnable;
      fiber.index = {static_cast<unsigned>(t % block_.x),
                     static_cast<unsigned>((t / block_.x) % block_.y),
                     static_cast<unsigned>(t / (size_t(block_.x) * block_.y))};
      getcontext(&fiber.context);
      fiber.context.uc_stack.ss_sp = stacks_[t]->stack();
      fiber.context.uc_stack.ss_size = kFiberStackBytes;
      fiber.context.uc_link = &scheduler_;
      makecontext(&fiber.context, &Launch::fiber_main, 0);
    }
    for (int phase = 0;; ++phase) {
      std::shuffle(order.begin(), order.end(), rng_);
      for (size_t t : order) {
        Fiber& fiber = fibers_[t];
        if (fiber.state == FiberState::kDone) continue;
        fiber.state = FiberState::kRunnable;
        running_ = t;
        threadIdx = fiber.index;
        swapcontext(&scheduler_, &fiber.context);
      }
      if (!error_.empty()) throw LaunchError(error_);
      check_guards(block_index, phase);
      size_t done = 0;
      for (const Fiber& fiber : fibers_)
        done += fiber.state == FiberState::kDone;
      if (done == fibers_.size()) return;
      if (done != 0)
        throw LaunchError(
            name_ + ": block (" + std::to_string(block_index.x) + ", " +
            std::to_string(block_index.y) + ") deadlocks: " +
            std::to_string(fibers_.size() - done) + " of its " +
            std::to_string(fibers_.size()) + " threads wait at barrier " +
            std::to_string(phase + 1) + ", which the others never reach");
    }
  }

  void check_guards(uint3 block_index, int phase) {
    bool intact = !dynamic_ || dynamic_->guards_intact();
    for (const auto& entry : statics_)
      intact = intact && entry.second->guards_intact();
    if (!intact)
      throw LaunchError(name_ + ": block (" + std::to_string(block_index.x) +
                        ", " + std::to_string(block_index.y) +
                        ") wrote outside its shared memory before barrier " +
                        std::to_string(phase + 1));
  }

  std::string name_;
  dim3 grid_, block_;
  std::unique_ptr<SharedBuffer> dynamic_;
  std::map<const void*, std::unique_ptr<SharedBuffer>> statics_;
  std::vector<Fiber> fibers_;
  std::vector<std::unique_ptr<FiberStack>> stacks_;
  ucontext_t scheduler_;
  size_t running_ = 0;
  const std::function<void()>* body_ = nullptr;
  std::mt19937_64 rng_;
  std::string error_;
};

// Runs `kernel(args...)` over `grid` x `block` with `dynamic_bytes` of
// dynamic shared memory; `seed` picks the thread orders.
template <typename Kernel, typename... Args>
void launch(const char* name, dim3 grid, dim3 block, size_t dynamic_bytes,
            uint64_t seed, Kernel kernel, Args... args) {
  Launch run(name, grid, block, dynamic_bytes, seed);
  const std::function<void()> body = [&]() { kernel(args...); };
  run.run(body);
}

}  // namespace cuda_emulation

inline void __syncthreads() { cuda_emulation::Launch::current()->barrier(); }

inline float atomicAdd(float* address, float value) {
  // One fiber runs at a time: a read-modify-write is atomic here.
  const float old = *address;
  *address = old + value;
  return old;
}

inline double atomicAdd(double* address, double value) {
  const double old = *address;
  *address = old + value;
  return old;
}

namespace mmscalable {
namespace cuda {

template <typename T>
inline T* dynamic_shared() {
  return reinterpret_cast<T*>(
      ::cuda_emulation::Launch::current()->dynamic_shared());
}

}  // namespace cuda
}  // namespace mmscalable

// Static shared arrays: one per block and call site, poisoned per block.
#define MMSCALABLE_SHARED(T, name, count)                                  \
  static const char name##_site = 0;                                       \
  T* const name = reinterpret_cast<T*>(                                    \
      ::cuda_emulation::Launch::current()->static_shared(&name##_site,     \
                                                         sizeof(T) * (count)))
