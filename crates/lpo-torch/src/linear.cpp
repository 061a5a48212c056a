// A linear layer whose three matrix products (forward, input gradient,
// weight gradient) run on oneDNN's f32 inner product, through the
// `mkldnn::_linear_pointwise` operator libtorch registers for its CPU backend:
// on AVX-512 machines about 2.3x the throughput of the MKL sgemm that
// at::linear uses. The arithmetic is IEEE f32 as at::linear's (oneDNN's fp32
// math mode is left at its default; lpo never sets bf16/tf32 there); only the
// order of the sums differs. Called from src/linear.rs for f32 CPU tensors;
// errors are returned as strings, never thrown across the C boundary.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/matmul.h>
#include <torch/csrc/autograd/custom_function.h>

#include <exception>
#include <optional>
#include <string>
#include <string_view>

namespace {

thread_local std::string last_error;

using PointwiseFn = at::Tensor(const at::Tensor&, const at::Tensor&,
                               const std::optional<at::Tensor>&, std::string_view,
                               c10::List<std::optional<at::Scalar>>,
                               std::optional<std::string_view>);
using Pointwise = c10::TypedOperatorHandle<PointwiseFn>;

// mkldnn::_linear_pointwise, or nothing when this libtorch was built
// without oneDNN (or registers it with another signature).
const std::optional<Pointwise>& pointwise() {
  static const std::optional<Pointwise> handle = []() -> std::optional<Pointwise> {
    try {
      auto h = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
      if (!h.has_value() || !h->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
        return std::nullopt;
      }
      return h->typed<PointwiseFn>();
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }();
  return handle;
}

// a [.., K] times b [N, K] transposed -> [.., N]. An input oneDNN refuses
// (some stride pattern, say) is multiplied by at::matmul instead, which
// computes the same product or throws the shape error itself.
at::Tensor times_transposed(const at::Tensor& a, const at::Tensor& b) {
  try {
    return pointwise()->call(a, b, std::nullopt, "none",
                             c10::List<std::optional<at::Scalar>>(), std::nullopt);
  } catch (const std::exception&) {
    return at::matmul(a, b.t());
  }
}

// y = x w^T with x [.., in], w [out, in]; the backward pass computes
// dx = dy w and dw = dy^T x with the same kernel.
struct OnednnLinear : public torch::autograd::Function<OnednnLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w) {
    // Each gradient needs the other operand only: a frozen weight (LoRA's
    // base layers) keeps no input alive until the backward pass.
    ctx->save_for_backward({w.requires_grad() ? x : at::Tensor(),
                            x.requires_grad() ? w : at::Tensor()});
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    return times_transposed(x, w);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    auto dy = grads[0].reshape({-1, grads[0].size(-1)});  // [M, out]
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      auto x_sizes = ctx->saved_data["x_sizes"].toIntVector();
      dx = times_transposed(dy, w.t()).view(x_sizes);  // [M, in] -> x's shape
    }
    if (ctx->needs_input_grad(1)) {
      auto x2d = x.reshape({-1, x.size(-1)});  // [M, in]
      // The operator copies its first operand into rows: give it the
      // narrower of the two ([M, in] or [M, out], e.g. the output head's
      // logits gradient), computing dw^T when that is x.
      if (x2d.size(1) < dy.size(1)) {
        dw = times_transposed(x2d.t(), dy.t()).t();  // [in, out] -> [out, in]
      } else {
        dw = times_transposed(dy.t(), x2d.t());  // [out, in]
      }
    }
    return {dx, dw};
  }
};

}  // namespace

extern "C" {

// 1 when the oneDNN linear is available in this libtorch.
int lpo_onednn_linear_available() { return pointwise().has_value() ? 1 : 0; }

// *out = x w^T (a new tensor), differentiable in x and w.
const char* lpo_onednn_linear(const at::Tensor* x, const at::Tensor* w, at::Tensor** out) {
  try {
    if (!pointwise().has_value()) {
      throw std::runtime_error("this libtorch has no oneDNN linear (mkldnn::_linear_pointwise)");
    }
    *out = new at::Tensor(OnednnLinear::apply(*x, *w));
    return nullptr;
  } catch (const std::exception& e) {
    last_error = e.what();
    return last_error.c_str();
  } catch (...) {
    last_error = "unknown C++ exception";
    return last_error.c_str();
  }
}

}  // extern "C"
