// libtorch's multi-tensor kernels that the tch crate does not bind: fused
// AdamW (one kernel over every parameter, as torch.optim.AdamW(fused=True))
// and the global gradient norm with clipping (as clip_grad_norm_, without a
// host synchronisation). Called from src/fused.rs; errors are returned as
// strings, never thrown across the C boundary.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>

#include <exception>
#include <string>
#include <vector>

namespace {

thread_local std::string last_error;

std::vector<at::Tensor> list(at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) out.push_back(*ts[i]);
  return out;
}

const char* fail(const std::exception& e) {
  last_error = e.what();
  return last_error.c_str();
}

}  // namespace

extern "C" {

// One AdamW update of n parameters in place (PyTorch's fused kernel, its
// AdamW formula). steps[i] holds the step number, already incremented; when
// found_inf holds 1 the kernel changes nothing.
const char* lpo_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads,
                            at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                            at::Tensor* const* steps, size_t n, double lr, double beta1,
                            double beta2, double weight_decay, double eps,
                            const at::Tensor* found_inf) {
  try {
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n),
                      list(exp_avg_sqs, n), {}, list(steps, n), lr, beta1, beta2,
                      weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false,
                      /*grad_scale=*/std::nullopt, *found_inf);
    return nullptr;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

// The global L2 norm of n gradients (computed in f32) into *norm, a new
// 0-dim f32 tensor on their device; with max_norm > 0 the gradients are
// scaled in place by min(1, max_norm / (norm + 1e-6)).
const char* lpo_clip_grad_norm(at::Tensor* const* grads, size_t n, double max_norm,
                               at::Tensor** norm) {
  try {
    auto g = list(grads, n);
    auto norms = at::_foreach_norm(g, 2, at::ScalarType::Float);
    auto total = at::linalg_vector_norm(at::stack(norms), 2);
    if (max_norm > 0) {
      auto coef = total.new_full({}, max_norm).div(total.add(1e-6)).clamp_max(1.0);
      at::_foreach_mul_(g, coef);
    }
    *norm = new at::Tensor(total);
    return nullptr;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

}  // extern "C"
