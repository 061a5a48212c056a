//! Every loss kind, declared once: its name, what it is, whether it needs a
//! reference model, which `loss.*` keys it reads and where its definition
//! comes from. The [`LossKind`] enum, the choices of `loss.kind`, which loss
//! keys enter a run id ([`LossKind::relevant_keys`]), the choices of
//! `lpo loss` and the loss table of docs/recipes.md are all derived from
//! [`LOSSES`], so a kind cannot be listed in one place and missed in another.

use serde::{Deserialize, Serialize};

/// What lpo knows about one loss kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossSpec {
    /// The kind.
    pub kind: LossKind,
    /// The name recipes use (`loss.kind`).
    pub name: &'static str,
    /// One line saying what it optimises.
    pub summary: &'static str,
    /// Whether it compares the policy with a frozen reference model. A
    /// reference-free kind trains without reference log-probabilities, and
    /// its implicit reward is `beta` times the per-token log-probability
    /// (`log pi / n`) instead of `beta (log pi - log pi_ref)`.
    pub reference: bool,
    /// Whether a prompt's loss depends on the other prompts of its batch
    /// (sorting or token weighting across the batch), so the batch cannot be
    /// split into micro-batches (`train.grad_accum` must be 1).
    pub batch: bool,
    /// The `loss.*` keys it reads besides those every kind reads
    /// ([`EVERY_KIND_READS`]).
    pub reads: &'static [&'static str],
    /// Where its definition comes from: the paper, and TRL's name where TRL
    /// has it (docs/losses.md, docs/trl-losses.md).
    pub source: &'static str,
}

/// The `loss.*` keys every kind reads: the kind itself, how sequence
/// log-probabilities aggregate tokens, and the supervised term's weight.
pub const EVERY_KIND_READS: &[&str] = &["kind", "normalize", "sft_weight"];

/// Keys a kind reads only while a switch is on: (key, switch).
pub const READ_ONLY_WITH: &[(&str, &str)] = &[("reward_scale", "margin_weight")];

macro_rules! loss_kinds {
    ($(
        $variant:ident = $name:literal {
            summary: $summary:literal,
            reference: $reference:literal,
            $(batch: $batch:literal,)?
            reads: [$($key:literal),* $(,)?],
            source: $source:literal $(,)?
        }
    )+) => {
        /// The training objective (docs/losses.md, docs/trl-losses.md); one
        /// entry of [`LOSSES`] each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum LossKind {
            $(
                #[doc = $summary]
                #[serde(rename = $name)]
                $variant,
            )+
        }

        /// Every loss kind, in the order docs and `lpo loss` list them.
        pub const LOSSES: &[LossSpec] = &[$(
            LossSpec {
                kind: LossKind::$variant,
                name: $name,
                summary: $summary,
                reference: $reference,
                batch: false $(|| $batch)?,
                reads: &[$($key),*],
                source: $source,
            },
        )+];

        /// The names of [`LOSSES`], as `loss.kind` takes them.
        pub const LOSS_NAMES: &[&str] = &[$($name),+];
    };
}

loss_kinds! {
    Lpo = "lpo" {
        summary: "Listwise preference optimization with explicit rewards: an exponential-logarithmic listwise term with an adaptive coefficient.",
        reference: true,
        reads: ["beta", "alpha", "gamma", "coefficient", "margin_weight", "reward_scale"],
        source: "docs/losses.md (the paper)",
    }
    Dpo = "dpo" {
        summary: "Direct preference optimization on pairs: -log sigma(beta (chosen - rejected log-ratio)).",
        reference: true,
        reads: ["beta", "pairing"],
        source: "Rafailov et al. 2023; TRL's loss_type = \"sigmoid\"",
    }
    Listmle = "listmle" {
        summary: "Plackett-Luce likelihood of the reward ordering of the implicit rewards.",
        reference: true,
        reads: ["beta"],
        source: "Xia et al. 2008",
    }
    Infonca = "infonca" {
        summary: "Noise-contrastive alignment, InfoNCA form: cross-entropy of softmax(s) to softmax(r / alpha).",
        reference: true,
        reads: ["beta", "alpha"],
        source: "Chen et al. 2024",
    }
    Nca = "nca" {
        summary: "Noise-contrastive alignment, NCA form: each response's implicit reward against its target weight.",
        reference: true,
        reads: ["beta", "alpha"],
        source: "Chen et al. 2024",
    }
    Hinge = "hinge" {
        summary: "SLiC's hinge on pairs: relu(1 - beta d).",
        reference: true,
        reads: ["beta", "pairing"],
        source: "Zhao et al. 2023; TRL's \"hinge\"",
    }
    Ipo = "ipo" {
        summary: "IPO's squared loss on per-token log-ratios: (d_c / n_c - d_r / n_r - 1 / (2 beta))^2.",
        reference: true,
        reads: ["beta", "pairing"],
        source: "Azar et al. 2023; TRL's \"ipo\"",
    }
    ExoPair = "exo_pair" {
        summary: "EXO on pairs: KL(softmax([z, 0]) || [1 - eps, eps]) with z = beta d.",
        reference: true,
        reads: ["beta", "pairing", "exo_epsilon"],
        source: "Ji et al. 2024; TRL's \"exo_pair\" (its label_smoothing is eps)",
    }
    NcaPair = "nca_pair" {
        summary: "Pairwise NCA: -log sigma(beta d_c) - (log sigma(-beta d_c) + log sigma(-beta d_r)) / 2.",
        reference: true,
        reads: ["beta", "pairing"],
        source: "Chen et al. 2024; TRL's \"nca_pair\"",
    }
    Robust = "robust" {
        summary: "Robust DPO for labels flipped with probability ls: (-(1 - ls) log sigma(z) + ls log sigma(-z)) / (1 - 2 ls).",
        reference: true,
        reads: ["beta", "pairing", "label_smoothing"],
        source: "Chowdhury et al. 2024; TRL's \"robust\"",
    }
    BcoPair = "bco_pair" {
        summary: "BCO on pairs (no running reward baseline, as TRL >= 0.29): -log sigma(beta d_c) - log sigma(-beta d_r).",
        reference: true,
        reads: ["beta", "pairing"],
        source: "Jung et al. 2024; TRL's \"bco_pair\"",
    }
    SppoHard = "sppo_hard" {
        summary: "SPPO with hard win probabilities: (d_c - 1 / (2 beta))^2 + (d_r + 1 / (2 beta))^2.",
        reference: true,
        reads: ["beta", "pairing"],
        source: "Wu et al. 2024; TRL's \"sppo_hard\"",
    }
    ApoZero = "apo_zero" {
        summary: "Anchored preference optimization, zero anchor: 1 - sigma(beta d_c) + sigma(beta d_r).",
        reference: true,
        reads: ["beta", "pairing"],
        source: "D'Oosterlinck et al. 2024; TRL's \"apo_zero\"",
    }
    ApoDown = "apo_down" {
        summary: "Anchored preference optimization, down anchor: sigma(beta d_c) + 1 - sigma(beta d).",
        reference: true,
        reads: ["beta", "pairing"],
        source: "D'Oosterlinck et al. 2024; TRL's \"apo_down\"",
    }
    Discopop = "discopop" {
        summary: "DiscoPOP's log-ratio modulated loss: mixes -log sigma(z) and exp(-z) by sigma(z / tau).",
        reference: true,
        reads: ["beta", "pairing", "discopop_tau"],
        source: "Lu et al. 2024; TRL's \"discopop\"",
    }
    Aot = "aot" {
        summary: "Alignment via optimal transport: the batch's policy and reference margins sorted, then -(1 - ls) log sigma(beta dl) - ls log sigma(-beta dl) rank by rank.",
        reference: true,
        batch: true,
        reads: ["beta", "pairing", "label_smoothing"],
        source: "Melnyk et al. 2024; TRL's \"aot\"",
    }
    AotUnpaired = "aot_unpaired" {
        summary: "AOT on the sorted chosen and rejected log-ratios of the batch, unpaired.",
        reference: true,
        batch: true,
        reads: ["beta", "pairing", "label_smoothing"],
        source: "Melnyk et al. 2024; TRL's \"aot_unpaired\"",
    }
    Sft = "sft" {
        summary: "The chosen responses' negative log-likelihood, token-weighted over the batch (TRL's RPO term as a loss; loss.sft_weight is the per-prompt form). The loss uses neither the reference nor beta; its logged rewards do, as TRL's.",
        reference: true,
        batch: true,
        reads: ["beta", "pairing"],
        source: "TRL's \"sft\"",
    }
    LipoLambda = "lipo_lambda" {
        summary: "LiPO-λ: DPO's term on every ordered pair, weighted by |ΔG| |Δ(1/ln(1 + rank))| (gains of the rewards scaled to [0, 1] per list, ranks under the implicit rewards).",
        reference: true,
        reads: ["beta"],
        source: "Liu et al. 2024 (docs/listwise-losses.md)",
    }
    Pro = "pro" {
        summary: "PRO, reference-free: nested Plackett-Luce stages on per-token log-probabilities scaled by reward differences, plus 0.05 (K - 1)^2 times the best response's NLL.",
        reference: false,
        reads: [],
        source: "Song et al. 2024 and its official code (docs/listwise-losses.md)",
    }
    Rrhf = "rrhf" {
        summary: "RRHF, reference-free: sum over ordered pairs of relu(u_worse - u_better) on per-token log-probabilities, plus the best response's per-token NLL.",
        reference: false,
        reads: [],
        source: "Yuan et al. 2023 (docs/listwise-losses.md)",
    }
    Simpo = "simpo" {
        summary: "SimPO, reference-free: -log sigma(beta (u_c - u_r) - gamma) on per-token log-probabilities u = log pi / n.",
        reference: false,
        reads: ["beta", "pairing", "simpo_gamma"],
        source: "Meng et al. 2024; TRL's CPOTrainer loss_type = \"simpo\" with cpo_alpha = 0",
    }
    Orpo = "orpo" {
        summary: "ORPO, reference-free: the chosen response's per-token NLL - beta log sigma(log odds(u_c) - log odds(u_r)), odds(u) = e^u / (1 - e^u).",
        reference: false,
        reads: ["beta", "pairing"],
        source: "Hong et al. 2024; TRL's ORPOTrainer odds_ratio_loss (its NLL also covers prompt tokens)",
    }
    SigmoidNorm = "sigmoid_norm" {
        summary: "DPO on per-token log-ratios: -log sigma(beta (d_c / n_c - d_r / n_r)).",
        reference: true,
        reads: ["beta", "pairing"],
        source: "TRL's \"sigmoid_norm\"",
    }
}

impl LossKind {
    /// Its entry of [`LOSSES`].
    pub fn spec(self) -> &'static LossSpec {
        LOSSES
            .iter()
            .find(|s| s.kind == self)
            .expect("every kind has an entry: both come from one declaration")
    }

    /// The name recipes use.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The scale of the implicit reward this kind logs and ranks held-out
    /// lists by: `beta` when the kind reads it, else 1 (`pro`, `rrhf`: their
    /// implicit reward is the per-token log-probability itself).
    pub fn implicit_reward_scale(self, beta: f64) -> f64 {
        if self.spec().reads.contains(&"beta") {
            beta
        } else {
            1.0
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<LossKind> {
        LOSSES.iter().find(|s| s.name == name).map(|s| s.kind)
    }

    /// The `[loss]` keys this loss reads with `margin_weight` as given; the
    /// others do not affect a run, so they stay out of its id.
    pub fn relevant_keys(self, margin_weight: bool) -> Vec<&'static str> {
        let spec = self.spec();
        EVERY_KIND_READS
            .iter()
            .chain(spec.reads)
            .copied()
            .filter(|key| {
                READ_ONLY_WITH
                    .iter()
                    .all(|&(k, switch)| k != *key || (switch == "margin_weight" && margin_weight))
            })
            .collect()
    }
}

/// `loss.kind`: one kind, or a weighted sum of kinds (TRL's `loss_type`
/// list with `loss_weights`, as MPO combines `sigmoid`, `bco_pair` and
/// `sft`). A single kind serializes as its name, so its run ids are those
/// of recipes written before combinations existed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Objective {
    /// One kind (`loss.kind = "dpo"`).
    One(LossKind),
    /// A weighted sum (`loss.kind = [{ kind = "dpo", weight = 0.8 }, ...]`):
    /// at least one part, each kind once, weights finite and > 0 (checked
    /// when the recipe loads).
    Weighted(Vec<Part>),
}

/// One part of a weighted `loss.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The kind.
    pub kind: LossKind,
    /// Its weight (TRL's `loss_weights`; 1 when left out, as there).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

impl From<LossKind> for Objective {
    fn from(kind: LossKind) -> Self {
        Objective::One(kind)
    }
}

impl Objective {
    /// Its parts: `(kind, weight)`, one of weight 1 for a single kind.
    pub fn parts(&self) -> Vec<Part> {
        match self {
            Objective::One(kind) => vec![Part {
                kind: *kind,
                weight: 1.0,
            }],
            Objective::Weighted(parts) => parts.clone(),
        }
    }

    /// The first part's kind: the one whose implicit reward a run logs and
    /// ranks held-out lists by.
    pub fn first(&self) -> LossKind {
        match self {
            Objective::One(kind) => *kind,
            Objective::Weighted(parts) => parts.first().map_or(LossKind::Lpo, |p| p.kind),
        }
    }

    /// The kind, when it is one kind (a weighted list of one part included,
    /// whatever its weight: the planner's identity checks ask for the plain
    /// kind).
    pub fn single(&self) -> Option<LossKind> {
        match self {
            Objective::One(kind) => Some(*kind),
            Objective::Weighted(parts) if parts.len() == 1 && parts[0].weight == 1.0 => {
                Some(parts[0].kind)
            }
            Objective::Weighted(_) => None,
        }
    }

    /// Whether some part compares the policy with a reference model: then
    /// the run loads and caches one.
    pub fn needs_reference(&self) -> bool {
        self.parts().iter().any(|p| p.kind.spec().reference)
    }

    /// The first part that couples the prompts of a batch, if any
    /// ([`LossSpec::batch`]).
    pub fn batch_kind(&self) -> Option<LossKind> {
        self.parts()
            .into_iter()
            .map(|p| p.kind)
            .find(|k| k.spec().batch)
    }

    /// The `[loss]` keys some part reads ([`LossKind::relevant_keys`]), each once.
    pub fn relevant_keys(&self, margin_weight: bool) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for part in self.parts() {
            for key in part.kind.relevant_keys(margin_weight) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// What a report calls it: the kind's name, or the parts as
    /// `0.8*dpo+0.2*bco_pair`.
    pub fn label(&self) -> String {
        match self {
            Objective::One(kind) => kind.as_str().to_string(),
            Objective::Weighted(parts) => parts
                .iter()
                .map(|p| format!("{}*{}", p.weight, p.kind.as_str()))
                .collect::<Vec<_>>()
                .join("+"),
        }
    }

    /// Problems of a weighted list: no part, a kind twice, a weight not
    /// finite and > 0 (or beyond f32's range, which the loss computes in).
    pub fn problems(&self) -> Vec<String> {
        let Objective::Weighted(parts) = self else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if parts.is_empty() {
            out.push("is an empty list: give a kind, or at least one { kind, weight }".into());
        }
        for (i, part) in parts.iter().enumerate() {
            if parts[..i].iter().any(|p| p.kind == part.kind) {
                out.push(format!(
                    "lists \"{}\" twice: give each kind once, with the sum of its weights",
                    part.kind.as_str()
                ));
            }
            let w = part.weight;
            if !(w.is_finite() && w > 0.0 && w <= f64::from(f32::MAX)) {
                out.push(format!(
                    "gives \"{}\" the weight {w}: weights must be finite, > 0 and within f32's range",
                    part.kind.as_str()
                ));
            }
        }
        out
    }
}

impl Default for Objective {
    fn default() -> Self {
        Objective::One(LossKind::Lpo)
    }
}

/// docs/recipes.md's table of loss kinds, generated from [`LOSSES`].
pub fn markdown() -> String {
    let mut out = String::from(
        "| kind | reference | batch | also reads `loss.` | definition | source |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for spec in LOSSES {
        let reads: Vec<String> = spec
            .reads
            .iter()
            .map(|key| match READ_ONLY_WITH.iter().find(|(k, _)| k == key) {
                Some((_, switch)) => format!("`{key}` (with `{switch}`)"),
                None => format!("`{key}`"),
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            spec.name,
            if spec.reference { "yes" } else { "no" },
            if spec.batch { "yes" } else { "no" },
            reads.join(", "),
            spec.summary.replace('|', "\\|"),
            spec.source.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_round_trip_through_serde() {
        for (i, spec) in LOSSES.iter().enumerate() {
            assert_eq!(LOSS_NAMES[i], spec.name);
            assert_eq!(LossKind::from_name(spec.name), Some(spec.kind));
            let json = serde_json::to_string(&spec.kind).unwrap();
            assert_eq!(json, format!("\"{}\"", spec.name));
            assert_eq!(serde_json::from_str::<LossKind>(&json).unwrap(), spec.kind);
            assert!(LOSSES[..i].iter().all(|s| s.name != spec.name));
        }
    }

    #[test]
    fn reward_scale_counts_only_with_margin_weight() {
        assert!(LossKind::Lpo.relevant_keys(true).contains(&"reward_scale"));
        assert!(!LossKind::Lpo.relevant_keys(false).contains(&"reward_scale"));
        assert_eq!(
            LossKind::Dpo.relevant_keys(true),
            ["kind", "normalize", "sft_weight", "beta", "pairing"]
        );
    }

    fn objective(text: &str) -> Objective {
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("kind = {text}"))
            .unwrap()
            .remove("kind")
            .unwrap();
        value.try_into().unwrap()
    }

    #[test]
    fn a_weighted_kind_parses_and_reads_what_its_parts_read() {
        assert_eq!(objective("\"dpo\""), Objective::One(LossKind::Dpo));
        let o = objective("[{ kind = \"dpo\", weight = 0.8 }, { kind = \"simpo\" }]");
        assert_eq!(
            o.parts(),
            [
                Part {
                    kind: LossKind::Dpo,
                    weight: 0.8
                },
                Part {
                    kind: LossKind::Simpo,
                    weight: 1.0
                },
            ]
        );
        assert_eq!(o.label(), "0.8*dpo+1*simpo");
        assert_eq!(o.first(), LossKind::Dpo);
        assert_eq!(o.single(), None);
        assert!(o.needs_reference(), "dpo needs one");
        assert_eq!(
            o.relevant_keys(false),
            [
                "kind",
                "normalize",
                "sft_weight",
                "beta",
                "pairing",
                "simpo_gamma"
            ]
        );
        assert!(o.problems().is_empty());
        assert_eq!(o.batch_kind(), None);
        let mpo = objective("[{ kind = \"dpo\", weight = 0.8 }, { kind = \"bco_pair\", weight = 0.2 }, { kind = \"sft\" }]");
        assert_eq!(mpo.batch_kind(), Some(LossKind::Sft));
        let free =
            objective("[{ kind = \"simpo\", weight = 0.5 }, { kind = \"orpo\", weight = 0.5 }]");
        assert!(!free.needs_reference());
        // One part of weight 1 is the kind itself.
        assert_eq!(
            objective("[{ kind = \"nca\" }]").single(),
            Some(LossKind::Nca)
        );
        assert_eq!(objective("[{ kind = \"nca\", weight = 2 }]").single(), None);
    }

    #[test]
    fn a_weighted_kind_refuses_no_parts_a_kind_twice_and_bad_weights() {
        let problem = |text: &str| objective(text).problems().join("; ");
        assert!(problem("[]").contains("empty list"));
        assert!(
            problem("[{ kind = \"dpo\" }, { kind = \"dpo\", weight = 2 }]")
                .contains("\"dpo\" twice")
        );
        for weight in ["0", "-1", "nan", "inf", "1e39"] {
            assert!(
                problem(&format!("[{{ kind = \"dpo\", weight = {weight} }}]"))
                    .contains("weights must be finite"),
                "{weight}"
            );
        }
    }

    #[test]
    fn one_kind_serializes_as_its_name() {
        let json = serde_json::to_string(&Objective::One(LossKind::Dpo)).unwrap();
        assert_eq!(json, "\"dpo\"", "run ids of one kind are as before");
        let weighted = objective("[{ kind = \"dpo\", weight = 0.8 }]");
        assert_eq!(
            serde_json::to_string(&weighted).unwrap(),
            r#"[{"kind":"dpo","weight":0.8}]"#
        );
    }
}
