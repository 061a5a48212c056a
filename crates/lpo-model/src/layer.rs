//! A linear layer with an optional LoRA adapter: what every projection of
//! a block is (attention's, the MLP's, each expert's and the router).

use tch::nn;
use tch::Tensor;

use crate::linear::linear;

/// Standard deviation of the normal initialisation (as Hugging Face's `initializer_range`).
pub(crate) const INIT_STD: f64 = 0.02;

/// A linear layer `x W^T (+ b)`, optionally with a LoRA adapter
/// ([`crate::lora::Adapter`]) added to its output.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    weight: Tensor,
    /// `[out]` (Qwen2's q/k/v).
    bias: Option<Tensor>,
    adapter: Option<crate::lora::Adapter>,
}

impl Linear {
    /// Weights from `N(0, 0.02)`, a zero bias when `bias`.
    pub(crate) fn new(vs: nn::Path, input: i64, output: i64, bias: bool) -> Linear {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        };
        Linear {
            weight: vs.var("weight", &[output, input], init),
            bias: bias.then(|| vs.var("bias", &[output], nn::Init::Const(0.0))),
            adapter: None,
        }
    }

    /// `[.., in] -> [.., out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let y = linear(x, &self.weight, self.bias.as_ref());
        match &self.adapter {
            Some(adapter) => y + adapter.forward(x),
            None => y,
        }
    }

    /// The same weights (shared tensors) with `adapter` attached.
    pub(crate) fn with_adapter(&self, adapter: Option<crate::lora::Adapter>) -> Linear {
        Linear {
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            adapter,
        }
    }

    /// The same weights with an adapter under `path / name` when `spec`
    /// targets `name` (PEFT's `target_modules` match the module's name).
    pub(crate) fn adapted(
        &self,
        path: &nn::Path,
        name: &str,
        spec: &crate::lora::LoraSpec,
    ) -> Linear {
        let (input, output) = self.shape();
        let adapter = spec
            .targets
            .iter()
            .any(|t| t == name)
            .then(|| crate::lora::Adapter::new(&(path / name), input, output, spec));
        self.with_adapter(adapter)
    }

    /// `(in, out)`.
    fn shape(&self) -> (i64, i64) {
        let size = self.weight.size();
        (size[1], size[0])
    }
}
