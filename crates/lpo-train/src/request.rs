//! What one run is asked to do ([`RunRequest`], with the [`Baseline`] its
//! evaluation compares against) and how it ended ([`RunOutcome`]): the types
//! the training loop (`run`), the rounds' data (`rounds`) and the evaluation
//! (`eval`) share, so none of them imports another for them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lpo_recipe::Recipe;
use lpo_results::{Layout, Summary};
use tch::Device;

/// What the policy is compared with at evaluation.
#[derive(Debug, Clone)]
pub enum Baseline {
    /// The reference (SFT) model.
    Reference,
    /// Another run's policy responses, read from its `eval.csv`.
    Run {
        /// Its id.
        id: String,
        /// Its directory.
        dir: PathBuf,
    },
}

/// Everything needed to execute one run.
#[derive(Clone)]
pub struct RunRequest<'a> {
    /// The run's resolved recipe.
    pub recipe: &'a Recipe,
    /// Its id.
    pub run_id: &'a str,
    /// Its swept keys.
    pub assignments: BTreeMap<String, serde_json::Value>,
    /// The results root.
    pub layout: &'a Layout,
    /// The device.
    pub device: Device,
    /// The evaluation baseline.
    pub baseline: Baseline,
    /// The group of ranks this run is shared with (data parallelism), or
    /// `None` for one process. Only rank 0 writes the run's files.
    pub group: Option<&'a lpo_torch::dist::Group>,
}

/// How a request ended.
#[derive(Debug)]
pub enum RunOutcome {
    /// Trained and evaluated now.
    Complete(Summary),
    /// Already complete from an earlier invocation; nothing was redone.
    AlreadyComplete(Summary),
    /// Stopped by an error; the summary names the step and cause.
    Failed(Summary),
    /// Another process holds the run's lock.
    Locked,
}
