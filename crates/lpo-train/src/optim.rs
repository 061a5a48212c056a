//! AdamW with learning-rate schedules and global gradient-norm clipping.
//!
//! The update is libtorch's fused AdamW kernel (that of
//! `torch.optim.AdamW(fused=True)`, one call over every parameter, through
//! [`lpo_torch::fused`]); the state is kept here so it can be saved in
//! checkpoints and a resumed run continues exactly. Parameters kept in bf16
//! get an f32 master copy; weight decay applies to matrices only. Only
//! trainable variables are optimised (LoRA freezes the base). The moments
//! are kept in f32, or in bf16 ([`Moments::Bf16`]: each update is computed
//! in f32 from the stored moments, op by op, and the new moments are rounded
//! when stored, halving optimizer memory). Nothing in a step waits for the
//! device: the gradient norm stays a tensor, and a step whose norm or loss is
//! not finite is skipped on the device.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use lpo_recipe::{LrSchedule, Moments};
use lpo_torch::fused::{self, AdamWStep};
use tch::{nn, Device, Kind, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One optimised parameter and its state.
struct Slot {
    name: String,
    param: Tensor,
    master: Option<Tensor>,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

impl Slot {
    /// The f32 weights the update applies to.
    fn weights(&self) -> &Tensor {
        self.master.as_ref().unwrap_or(&self.param)
    }
}

/// The AdamW optimizer (Loshchilov & Hutter) over a var store's variables.
pub struct AdamW {
    slots: Vec<Slot>,
    step: i64,
    weight_decay: f64,
    moments: Kind,
    /// The step number as a 0-dim f32 tensor on the parameters' device,
    /// where the fused kernel reads it.
    step_tensor: Tensor,
}

impl AdamW {
    /// Optimises every trainable variable of `vs`, in name order, with
    /// f32 moments.
    pub fn new(vs: &nn::VarStore, weight_decay: f64) -> AdamW {
        AdamW::with_moments(vs, weight_decay, Moments::F32)
    }

    /// As [`AdamW::new`], with the moments stored in the given precision.
    pub fn with_moments(vs: &nn::VarStore, weight_decay: f64, moments: Moments) -> AdamW {
        let moments = match moments {
            Moments::F32 => Kind::Float,
            Moments::Bf16 => Kind::BFloat16,
        };
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let device = vars.first().map_or(Device::Cpu, |(_, t)| t.device());
        let slots = vars
            .into_iter()
            .map(|(name, param)| {
                let master =
                    (param.kind() != Kind::Float).then(|| param.detach().to_kind(Kind::Float));
                let zeros = param.zeros_like().to_kind(moments);
                Slot {
                    decay: param.dim() >= 2,
                    m: zeros.shallow_clone(),
                    v: zeros.copy(),
                    name,
                    param,
                    master,
                }
            })
            .collect();
        AdamW {
            slots,
            step: 0,
            weight_decay,
            moments,
            step_tensor: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    /// Clears gradients.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// The trained parameters, in slot order.
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    /// The defined gradients, in slot order.
    fn grads(&self) -> Vec<Tensor> {
        self.slots
            .iter()
            .map(|s| s.param.grad())
            .filter(Tensor::defined)
            .collect()
    }

    /// Global L2 norm of the gradients (read from the device).
    pub fn grad_norm(&self) -> Result<f64> {
        Ok(fused::clip_grad_norm(&self.grads(), 0.0)?.double_value(&[]))
    }

    /// Scales gradients so their global norm is at most `max_norm` (0 =
    /// off). Returns the norm before clipping, a 0-dim f32 tensor on the
    /// device (reading it is up to the caller).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<Tensor> {
        tch::no_grad(|| fused::clip_grad_norm(&self.grads(), max_norm.max(0.0)))
    }

    /// One update at learning rate `lr`. With `skip` (a 0-dim bool tensor on
    /// the device, e.g. "the gradient norm is not finite") holding true,
    /// parameters and moments stay as they are.
    pub fn step(&mut self, lr: f64, skip: Option<&Tensor>) -> Result<()> {
        self.step += 1;
        let found_inf = match skip {
            Some(skip) => skip.to_kind(Kind::Float),
            None => Tensor::zeros([], (Kind::Float, self.step_tensor.device())),
        };
        tch::no_grad(|| {
            if self.moments == Kind::Float {
                self.fused_step(lr, &found_inf)?;
            } else {
                self.stepwise(lr, &found_inf);
            }
            for s in &mut self.slots {
                if let Some(master) = &s.master {
                    s.param.copy_(master);
                }
            }
            Ok(())
        })
    }

    /// The update with libtorch's fused kernel: one call for the matrices
    /// (with weight decay) and one for the rest.
    fn fused_step(&mut self, lr: f64, found_inf: &Tensor) -> Result<()> {
        let _ = self.step_tensor.fill_(self.step as f64);
        for decay in [true, false] {
            let (mut weights, mut grads, mut m, mut v) = (vec![], vec![], vec![], vec![]);
            for s in self.slots.iter().filter(|s| s.decay == decay) {
                let g = s.param.grad();
                if g.defined() {
                    weights.push(s.weights().shallow_clone());
                    grads.push(g.to_kind(Kind::Float));
                    m.push(s.m.shallow_clone());
                    v.push(s.v.shallow_clone());
                }
            }
            let h = AdamWStep {
                lr,
                beta1: BETA1,
                beta2: BETA2,
                weight_decay: if decay { self.weight_decay } else { 0.0 },
                eps: EPS,
            };
            fused::adamw(&weights, &grads, &m, &v, &self.step_tensor, found_inf, h)?;
        }
        Ok(())
    }

    /// The update op by op in f32, for moments stored in bf16 (the fused
    /// kernel wants them in the parameters' kind). Reads `found_inf` on the
    /// host.
    fn stepwise(&mut self, lr: f64, found_inf: &Tensor) {
        if found_inf.double_value(&[]) != 0.0 {
            return;
        }
        let t = self.step as f64;
        let bias1 = 1.0 - BETA1.powf(t);
        let bias2 = 1.0 - BETA2.powf(t);
        for s in &mut self.slots {
            let g = s.param.grad();
            if !g.defined() {
                continue;
            }
            let g = g.to_kind(Kind::Float);
            let m = s.m.to_kind(Kind::Float) * BETA1 + &g * (1.0 - BETA1);
            let v = s.v.to_kind(Kind::Float) * BETA2 + g.square() * (1.0 - BETA2);
            let update = (&m / bias1) / ((&v / bias2).sqrt() + EPS);
            s.m = m.to_kind(self.moments);
            s.v = v.to_kind(self.moments);
            let decay = if s.decay { lr * self.weight_decay } else { 0.0 };
            let mut weights = s.weights().shallow_clone();
            if decay != 0.0 {
                let _ = weights.g_mul_scalar_(1.0 - decay);
            }
            let _ = weights.g_sub_(&(update * lr));
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Moments (and master weights) by name, for checkpoints.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for s in &self.slots {
            out.insert(format!("m.{}", s.name), s.m.shallow_clone());
            out.insert(format!("v.{}", s.name), s.v.shallow_clone());
            if let Some(master) = &s.master {
                out.insert(format!("master.{}", s.name), master.shallow_clone());
            }
        }
        out.insert("step".into(), Tensor::from_slice(&[self.step]));
        out
    }

    /// Restores what [`AdamW::state`] saved.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let get = |key: String| -> Result<Tensor> {
            state
                .get(&key)
                .map(Tensor::shallow_clone)
                .with_context(|| format!("optimizer state lacks {key}"))
        };
        for s in &mut self.slots {
            let device = s.param.device();
            s.m = get(format!("m.{}", s.name))?
                .to_device(device)
                .to_kind(self.moments);
            s.v = get(format!("v.{}", s.name))?
                .to_device(device)
                .to_kind(self.moments);
            if s.master.is_some() {
                s.master = Some(get(format!("master.{}", s.name))?.to_device(device));
            }
        }
        self.step = get("step".into())?.int64_value(&[0]);
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`: linear warmup
/// to `peak` over `warmup` steps, then constant, linear or cosine decay to 0.
pub fn learning_rate(peak: f64, schedule: LrSchedule, warmup: u32, step: u32, total: u32) -> f64 {
    if step < warmup {
        return peak * f64::from(step + 1) / f64::from(warmup + 1);
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = (f64::from(step - warmup) / f64::from(span)).min(1.0);
    match schedule {
        LrSchedule::Constant => peak,
        LrSchedule::Linear => peak * (1.0 - progress),
        LrSchedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn adamw_matches_the_closed_form_first_steps() {
        // With a constant gradient g, Adam's bias-corrected update is exactly
        // lr * g / (|g| + eps) at every step: the parameter moves by lr*sign(g).
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, 0.1);
        for _ in 0..3 {
            opt.zero_grad();
            (&w * Tensor::from_slice(&[2.0f32, -3.0]).view([1, 2]))
                .sum(Kind::Float)
                .backward();
            opt.step(0.01, None).unwrap();
        }
        // Decoupled decay: w <- w (1 - lr wd) - lr sign(g), three times.
        let mut expected = [1.0f64, 1.0];
        for _ in 0..3 {
            expected[0] = expected[0] * (1.0 - 0.001) - 0.01;
            expected[1] = expected[1] * (1.0 - 0.001) + 0.01;
        }
        let got = Vec::<f32>::try_from(w.get(0)).unwrap();
        assert!(
            (f64::from(got[0]) - expected[0]).abs() < 1e-6,
            "{got:?} vs {expected:?}"
        );
        assert!((f64::from(got[1]) - expected[1]).abs() < 1e-6);
    }

    /// AdamW in float64 (Loshchilov & Hutter, PyTorch's form): decoupled
    /// decay, bias-corrected moments, eps added to the corrected root.
    fn adamw_f64(w: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], t: i32, lr: f64, wd: f64) {
        let (b1, b2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for i in 0..w.len() {
            m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
            v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
            w[i] = w[i] * (1.0 - lr * wd) - lr * (m[i] / b1) / ((v[i] / b2).sqrt() + EPS);
        }
    }

    #[test]
    fn adamw_equals_the_float64_closed_form_over_varying_gradients() {
        // Gradient of sum(w * c_t) is c_t: a different fixed vector each step,
        // so moments mix steps. The matrix decays, the vector does not.
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 3], nn::Init::Const(0.5));
        let b = vs.root().var("b", &[3], nn::Init::Const(-0.25));
        let mut opt = AdamW::new(&vs, 0.1);
        let coef = |t: usize, i: usize| ((t * 7 + i * 3) as f64 * 0.61).sin() * 2.0;
        let (mut rw, mut mw, mut vw) = (vec![0.5; 6], vec![0.0; 6], vec![0.0; 6]);
        let (mut rb, mut mb, mut vb) = (vec![-0.25; 3], vec![0.0; 3], vec![0.0; 3]);
        for t in 0..6 {
            let gw: Vec<f64> = (0..6).map(|i| coef(t, i)).collect();
            let gb: Vec<f64> = (0..3).map(|i| coef(t, i + 6)).collect();
            let cw = Tensor::from_slice(&gw).to_kind(Kind::Float).view([2, 3]);
            let cb = Tensor::from_slice(&gb).to_kind(Kind::Float);
            opt.zero_grad();
            ((&w * &cw).sum(Kind::Float) + (&b * &cb).sum(Kind::Float)).backward();
            let lr = 0.05 / (t + 1) as f64;
            opt.step(lr, None).unwrap();
            let f32s = |g: &[f64]| g.iter().map(|&x| f64::from(x as f32)).collect::<Vec<_>>();
            adamw_f64(&mut rw, &mut mw, &mut vw, &f32s(&gw), t as i32 + 1, lr, 0.1);
            adamw_f64(&mut rb, &mut mb, &mut vb, &f32s(&gb), t as i32 + 1, lr, 0.0);
        }
        let got_w = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        let got_b = Vec::<f32>::try_from(&b).unwrap();
        for (got, want) in got_w.iter().chain(&got_b).zip(rw.iter().chain(&rb)) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn a_step_marked_to_skip_changes_nothing() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 2], nn::Init::Const(1.0));
        for moments in [Moments::F32, Moments::Bf16] {
            let mut opt = AdamW::with_moments(&vs, 0.1, moments);
            opt.zero_grad();
            (&w * 3.0).sum(Kind::Float).backward();
            let before = w.copy();
            opt.step(0.1, Some(&Tensor::from(true))).unwrap();
            assert!(w.equal(&before), "{moments:?}");
            let state = opt.state();
            assert_eq!(state["m.w"].abs().sum(Kind::Float).double_value(&[]), 0.0);
            opt.step(0.1, Some(&Tensor::from(false))).unwrap();
            assert!(!w.equal(&before), "{moments:?}");
        }
    }

    #[test]
    fn bf16_moments_are_stored_in_bf16_and_track_f32_moments() {
        // The same noisy quadratic descent with f32 and with bf16 moments:
        // bf16 keeps 8 bits of mantissa, so the paths agree to about 1%.
        // Fixed inputs, not libtorch's global generator (other tests reseed it).
        let values = |offset: f64| {
            let v: Vec<f32> = (0..64)
                .map(|i| ((i as f64 * 0.37 + offset).sin()) as f32)
                .collect();
            Tensor::from_slice(&v)
        };
        let run = |moments| {
            let vs = nn::VarStore::new(Device::Cpu);
            let mut w = vs.root().var("w", &[64], nn::Init::Const(0.0));
            tch::no_grad(|| w.copy_(&values(0.0)));
            let frozen = vs.root().var("frozen", &[4], nn::Init::Const(1.0));
            let _ = frozen.set_requires_grad(false);
            let mut opt = AdamW::with_moments(&vs, 0.0, moments);
            let target = values(1.0);
            for _ in 0..20 {
                opt.zero_grad();
                (&w - &target).square().sum(Kind::Float).backward();
                opt.step(1e-2, None).unwrap();
            }
            let state = opt.state();
            assert!(
                !state.contains_key("m.frozen"),
                "frozen variables are not optimised"
            );
            (w.detach(), state["m.w"].kind())
        };
        let (f32_w, f32_kind) = run(Moments::F32);
        let (bf16_w, bf16_kind) = run(Moments::Bf16);
        assert_eq!((f32_kind, bf16_kind), (Kind::Float, Kind::BFloat16));
        let diff = (&f32_w - &bf16_w).abs().max().double_value(&[]);
        assert!(diff > 0.0 && diff < 1e-2, "{diff}");
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_reports_the_original() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(0.0));
        let mut opt = AdamW::new(&vs, 0.0);
        (&w * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.clip_grad_norm(1.0).unwrap().double_value(&[]);
        assert!((norm - 5.0).abs() < 1e-6);
        assert!((opt.grad_norm().unwrap() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn state_round_trips_so_resumed_training_is_identical() {
        let run = |resume_after: Option<usize>| {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let w = vs.root().var(
                "w",
                &[4],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            );
            let mut opt = AdamW::new(&vs, 0.01);
            for i in 0..6 {
                if Some(i) == resume_after {
                    let state = opt.state();
                    let saved: BTreeMap<String, Tensor> =
                        state.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
                    opt = AdamW::new(&vs, 0.01);
                    opt.load_state(&saved).unwrap();
                }
                opt.zero_grad();
                (&w * &w * (i as f64 + 1.0)).sum(Kind::Float).backward();
                opt.step(0.1, None).unwrap();
            }
            Vec::<f32>::try_from(&w).unwrap()
        };
        assert_eq!(run(None), run(Some(3)));
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        let lr = |s, step| learning_rate(1.0, s, 4, step, 14);
        assert!((lr(LrSchedule::Cosine, 0) - 0.2).abs() < 1e-12);
        assert!((lr(LrSchedule::Cosine, 3) - 0.8).abs() < 1e-12);
        assert!((lr(LrSchedule::Cosine, 4) - 1.0).abs() < 1e-12);
        assert!((lr(LrSchedule::Cosine, 9) - 0.5).abs() < 1e-12);
        assert!((lr(LrSchedule::Linear, 9) - 0.5).abs() < 1e-12);
        assert_eq!(lr(LrSchedule::Constant, 13), 1.0);
        assert!(lr(LrSchedule::Cosine, 13) < 0.03);
    }
}
