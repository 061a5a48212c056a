//! Rotary position embeddings: the base frequencies and the scalings of
//! transformers' `modeling_rope_utils` that lpo computes (`linear`,
//! `llama3`, `yarn`). `dynamic` is refused: transformers recomputes its
//! frequencies from the longest sequence seen so far, so a token's
//! log-probability would depend on the calls before it.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// A rotary scaling (`rope_parameters.rope_type` other than `default`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (every frequency / factor).
    Linear {
        /// Interpolation factor.
        factor: f64,
    },
    /// Llama 3.1: low frequencies / factor, high ones kept, a smooth blend between.
    Llama3 {
        /// Scale of the low frequencies (8 in Llama 3.1).
        factor: f64,
        /// Wavelengths above original / low_freq_factor are scaled.
        low_freq_factor: f64,
        /// Wavelengths below original / high_freq_factor are kept.
        high_freq_factor: f64,
        /// Context length of pre-training.
        original_max_position_embeddings: f64,
    },
    /// YaRN: a ramp between interpolated and extrapolated frequencies, and
    /// cos/sin scaled by an attention factor.
    Yarn {
        /// Interpolation factor.
        factor: f64,
        /// Context length of pre-training.
        original_max_position_embeddings: f64,
        /// Rotations where extrapolation ends (default 32).
        beta_fast: Option<f64>,
        /// Rotations where interpolation begins (default 1).
        beta_slow: Option<f64>,
        /// Multiplies cos and sin; default from `factor`, `mscale`, `mscale_all_dim`.
        attention_factor: Option<f64>,
        /// See `attention_factor`.
        mscale: Option<f64>,
        /// See `attention_factor`.
        mscale_all_dim: Option<f64>,
        /// Round the correction range to whole dimensions (default true).
        truncate: Option<bool>,
    },
}

fn number(params: &Map<String, Value>, kind: &str, key: &str) -> Result<Option<f64>> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v
                .as_f64()
                .with_context(|| format!("rope `{kind}`: `{key}` is {v}, not a number"))?;
            anyhow::ensure!(
                x.is_finite() && x > 0.0,
                "rope `{kind}`: `{key}` is {x}, but must be a positive number"
            );
            Ok(Some(x))
        }
    }
}

fn required(params: &Map<String, Value>, kind: &str, key: &str) -> Result<f64> {
    number(params, kind, key)?.with_context(|| format!("rope `{kind}` needs `{key}`"))
}

impl RopeScaling {
    /// Reads a standardized rotary parameter dict (`rope_type` or `type`
    /// already resolved to `kind`); `max_positions` stands in for a missing
    /// `original_max_position_embeddings`, as in transformers.
    pub(crate) fn parse(
        kind: &str,
        params: &Map<String, Value>,
        max_positions: i64,
    ) -> Result<Option<RopeScaling>> {
        let original = || -> Result<f64> {
            Ok(number(params, kind, "original_max_position_embeddings")?
                .unwrap_or(max_positions as f64))
        };
        Ok(Some(match kind {
            "default" => return Ok(None),
            "linear" => RopeScaling::Linear {
                factor: required(params, kind, "factor")?,
            },
            "llama3" => {
                let scaling = RopeScaling::Llama3 {
                    factor: required(params, kind, "factor")?,
                    low_freq_factor: required(params, kind, "low_freq_factor")?,
                    high_freq_factor: required(params, kind, "high_freq_factor")?,
                    original_max_position_embeddings: original()?,
                };
                if let RopeScaling::Llama3 {
                    low_freq_factor,
                    high_freq_factor,
                    ..
                } = scaling
                {
                    anyhow::ensure!(
                        high_freq_factor > low_freq_factor,
                        "rope `llama3`: high_freq_factor {high_freq_factor} must exceed low_freq_factor {low_freq_factor}"
                    );
                }
                scaling
            }
            "yarn" => {
                let original = original()?;
                RopeScaling::Yarn {
                    factor: number(params, kind, "factor")?
                        .unwrap_or(max_positions as f64 / original),
                    original_max_position_embeddings: original,
                    beta_fast: number(params, kind, "beta_fast")?,
                    beta_slow: number(params, kind, "beta_slow")?,
                    attention_factor: number(params, kind, "attention_factor")?,
                    mscale: number(params, kind, "mscale")?,
                    mscale_all_dim: number(params, kind, "mscale_all_dim")?,
                    truncate: match params.get("truncate") {
                        None | Some(Value::Null) => None,
                        Some(Value::Bool(b)) => Some(*b),
                        Some(v) => bail!("rope `yarn`: `truncate` is {v}, not true or false"),
                    },
                }
            }
            "dynamic" => bail!(
                "rope_type `dynamic` is not supported: transformers recomputes its frequencies from \
                 the longest sequence seen so far, so log-probabilities would depend on earlier calls"
            ),
            other => bail!(
                "rope_type `{other}` is not supported (lpo computes default, linear, llama3 and yarn)"
            ),
        }))
    }

    /// The `rope_type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Llama3 { .. } => "llama3",
            RopeScaling::Yarn { .. } => "yarn",
        }
    }

    /// The parameters as transformers writes them (without `rope_theta`).
    pub(crate) fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("rope_type".into(), self.kind().into());
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        };
        match *self {
            RopeScaling::Linear { factor } => put("factor", Some(factor)),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                put("factor", Some(factor));
                put("low_freq_factor", Some(low_freq_factor));
                put("high_freq_factor", Some(high_freq_factor));
                put(
                    "original_max_position_embeddings",
                    Some(original_max_position_embeddings),
                );
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                mscale,
                mscale_all_dim,
                truncate,
            } => {
                put("factor", Some(factor));
                put(
                    "original_max_position_embeddings",
                    Some(original_max_position_embeddings),
                );
                put("beta_fast", beta_fast);
                put("beta_slow", beta_slow);
                put("attention_factor", attention_factor);
                put("mscale", mscale);
                put("mscale_all_dim", mscale_all_dim);
                if let Some(t) = truncate {
                    m.insert("truncate".into(), t.into());
                }
            }
        }
        // Integers stay integers, as transformers writes them.
        for key in ["original_max_position_embeddings"] {
            if let Some(x) = m.get(key).and_then(Value::as_f64) {
                if x.fract() == 0.0 {
                    m.insert(key.into(), (x as i64).into());
                }
            }
        }
        m
    }
}

/// The inverse frequencies of a head of width `dim` (`dim / 2` of them) and
/// the factor cos and sin are multiplied by, as transformers computes them.
pub fn frequencies(dim: i64, theta: f64, scaling: Option<&RopeScaling>) -> (Vec<f64>, f64) {
    let half = (dim / 2) as usize;
    let d = dim as f64;
    // theta^(-2i/dim), i = 0..dim/2
    let base: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / d))
        .collect();
    match *scaling.unwrap_or(&RopeScaling::Linear { factor: 1.0 }) {
        RopeScaling::Linear { factor } => (base.iter().map(|f| f / factor).collect(), 1.0),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let scaled = base
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect();
            (scaled, 1.0)
        }
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: original,
            beta_fast,
            beta_slow,
            attention_factor,
            mscale,
            mscale_all_dim,
            truncate,
        } => {
            let get_mscale = |scale: f64, m: f64| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * m * scale.ln() + 1.0
                }
            };
            let attention = attention_factor.unwrap_or(match (mscale, mscale_all_dim) {
                (Some(m), Some(all)) => get_mscale(factor, m) / get_mscale(factor, all),
                _ => get_mscale(factor, 1.0),
            });
            // The dimension at which a frequency makes `rotations` turns over the original context.
            let correction = |rotations: f64| {
                d * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
            };
            let (mut low, mut high) = (
                correction(beta_fast.unwrap_or(32.0)),
                correction(beta_slow.unwrap_or(1.0)),
            );
            if truncate.unwrap_or(true) {
                low = low.floor();
                high = high.ceil();
            }
            let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
            if low == high {
                high += 0.001;
            }
            let scaled = base
                .iter()
                .enumerate()
                .map(|(i, &f)| {
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation = 1.0 - ramp;
                    f / factor * (1.0 - extrapolation) + f * extrapolation
                })
                .collect();
            (scaled, attention)
        }
    }
}
