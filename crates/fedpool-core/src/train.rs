//! Local training on one node's rows: mini-batch SGD with momentum or Adam, local epochs, and
//! FedProx's proximal term.
//!
//! candle computes the gradients; the optimizer runs on the flat parameter vector in plain Rust,
//! which keeps parameters contiguous (what strategies, DP and secure aggregation consume) and
//! avoids a dozen small tensor ops per step.

use candle_core::{Device, Tensor};
use fedpool_data::{Dataset, Targets};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::{BatchTargets, Network};

/// The optimizer a node uses for its local steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    /// SGD with heavy-ball momentum.
    Sgd {
        /// Momentum coefficient in [0, 1); 0 is plain SGD.
        #[serde(default)]
        momentum: f32,
    },
    /// Adam (Kingma & Ba 2015).
    Adam {
        /// First-moment decay.
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// Denominator guard.
        #[serde(default = "default_eps")]
        eps: f32,
    },
}

fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-8
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Sgd { momentum: 0.0 }
    }
}

/// How a node trains locally in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTraining {
    /// Passes over the node's rows per round.
    pub local_epochs: usize,
    /// Mini-batch size (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f32,
    /// Optimizer.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// L2 weight decay added to the gradient.
    #[serde(default)]
    pub weight_decay: f32,
    /// FedProx proximal coefficient μ: the gradient gains μ·(w − w_global), keeping local models
    /// near the global one on non-IID data (Li et al. 2020).
    #[serde(default)]
    pub proximal_mu: f32,
}

impl Default for LocalTraining {
    fn default() -> Self {
        LocalTraining {
            local_epochs: 1,
            batch_size: 32,
            learning_rate: 0.1,
            optimizer: Optimizer::default(),
            weight_decay: 0.0,
            proximal_mu: 0.0,
        }
    }
}

/// What one local training run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Locally trained parameters minus the starting (global) parameters.
    pub delta: Vec<f32>,
    /// Rows trained on.
    pub n_examples: usize,
    /// Mean loss over the last local epoch.
    pub final_loss: f32,
    /// Optimizer steps taken.
    pub n_steps: usize,
}

/// Trains `network` from `global` on `data` and returns the update.
///
/// Deterministic given `rng`: batches are shuffled with it and nothing else is random.
pub fn train_local(
    network: &Network,
    global: &[f32],
    data: &Dataset,
    config: &LocalTraining,
    rng: &mut impl Rng,
) -> Result<TrainOutcome, Error> {
    network.check_len(global)?;
    validate_data(network, data)?;
    if config.batch_size == 0 {
        return Err(Error::Model(
            "training.batch_size must be at least 1".into(),
        ));
    }
    let n_rows = data.n_rows();
    let device = Device::Cpu;
    let x_all = Tensor::from_slice(&data.features, (n_rows, data.n_features), &device)?;
    let y_all = match &data.targets {
        Targets::Classes { labels, .. } => {
            BatchTargets::Classes(Tensor::from_slice(labels, n_rows, &device)?)
        }
        Targets::Real(values) => BatchTargets::Real(Tensor::from_slice(values, n_rows, &device)?),
    };

    let mut params = global.to_vec();
    let mut grad = vec![0f32; params.len()];
    let mut state = OptimizerState::new(&config.optimizer, params.len());
    let mut order: Vec<u32> = (0..n_rows as u32).collect();
    let mut final_loss = 0.0;
    let mut n_steps = 0;
    for _ in 0..config.local_epochs {
        order.shuffle(rng);
        let mut epoch_loss = 0.0f64;
        for batch in order.chunks(config.batch_size) {
            let (x, y) = if batch.len() == n_rows {
                (x_all.clone(), y_all.clone_ref())
            } else {
                let idx = Tensor::from_slice(batch, batch.len(), &device)?;
                (x_all.index_select(&idx, 0)?, y_all.select(&idx)?)
            };
            let vars = network.vars(&params, &device)?;
            let var_tensors: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
            let outputs = network.forward(&var_tensors, &x)?;
            let loss = network.loss(&outputs, &y)?;
            let grads = loss.backward()?;
            let grad_tensors: Vec<&Tensor> = vars
                .iter()
                .map(|v| {
                    grads
                        .get(v.as_tensor())
                        .ok_or_else(|| Error::Model("a parameter received no gradient".into()))
                })
                .collect::<Result<_, _>>()?;
            network.flatten_into(&grad_tensors, &mut grad)?;
            let batch_loss = loss.to_scalar::<f32>()?;
            if !batch_loss.is_finite() {
                return Err(Error::Diverged {
                    step: n_steps,
                    loss: batch_loss,
                });
            }
            epoch_loss += batch_loss as f64 * batch.len() as f64;
            state.step(config, &mut params, &mut grad, global);
            n_steps += 1;
        }
        final_loss = (epoch_loss / n_rows as f64) as f32;
    }
    for (p, g) in params.iter_mut().zip(global) {
        *p -= g;
    }
    Ok(TrainOutcome {
        delta: params,
        n_examples: n_rows,
        final_loss,
        n_steps,
    })
}

fn validate_data(network: &Network, data: &Dataset) -> Result<(), Error> {
    if data.n_features != network.n_inputs() {
        return Err(Error::Model(format!(
            "data has {} features, the model expects {}",
            data.n_features,
            network.n_inputs()
        )));
    }
    if data.n_rows() == 0 {
        return Err(Error::Model("cannot train on zero rows".into()));
    }
    match &data.targets {
        Targets::Classes { n_classes, .. } if *n_classes == network.n_outputs() => Ok(()),
        Targets::Real(_) if network.n_outputs() == 1 => Ok(()),
        Targets::Classes { n_classes, .. } => Err(Error::Model(format!(
            "data has {n_classes} classes, the model outputs {}",
            network.n_outputs()
        ))),
        Targets::Real(_) => Err(Error::Model(format!(
            "a numeric label needs one model output, the model has {}",
            network.n_outputs()
        ))),
    }
}

impl BatchTargets {
    fn clone_ref(&self) -> BatchTargets {
        match self {
            BatchTargets::Classes(t) => BatchTargets::Classes(t.clone()),
            BatchTargets::Real(t) => BatchTargets::Real(t.clone()),
        }
    }

    fn select(&self, idx: &Tensor) -> Result<BatchTargets, Error> {
        Ok(match self {
            BatchTargets::Classes(t) => BatchTargets::Classes(t.index_select(idx, 0)?),
            BatchTargets::Real(t) => BatchTargets::Real(t.index_select(idx, 0)?),
        })
    }
}

/// Per-run optimizer state over the flat parameter vector, carrying its hyperparameters so a
/// state can never be stepped with another optimizer's rule.
enum OptimizerState {
    Sgd {
        momentum: f32,
        velocity: Vec<f32>,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        m: Vec<f32>,
        v: Vec<f32>,
        t: i32,
    },
}

impl OptimizerState {
    fn new(optimizer: &Optimizer, n_params: usize) -> OptimizerState {
        match *optimizer {
            Optimizer::Sgd { momentum } => OptimizerState::Sgd {
                momentum,
                velocity: if momentum == 0.0 {
                    Vec::new()
                } else {
                    vec![0.0; n_params]
                },
            },
            Optimizer::Adam { beta1, beta2, eps } => OptimizerState::Adam {
                beta1,
                beta2,
                eps,
                m: vec![0.0; n_params],
                v: vec![0.0; n_params],
                t: 0,
            },
        }
    }

    fn step(
        &mut self,
        config: &LocalTraining,
        params: &mut [f32],
        grad: &mut [f32],
        global: &[f32],
    ) {
        let (wd, mu) = (config.weight_decay, config.proximal_mu);
        if wd != 0.0 || mu != 0.0 {
            for ((g, &p), &g0) in grad.iter_mut().zip(params.iter()).zip(global) {
                *g += wd * p + mu * (p - g0);
            }
        }
        let lr = config.learning_rate;
        match self {
            OptimizerState::Sgd { momentum, velocity } => {
                if velocity.is_empty() {
                    for (p, &g) in params.iter_mut().zip(grad.iter()) {
                        *p -= lr * g;
                    }
                } else {
                    for ((p, &g), v) in params.iter_mut().zip(grad.iter()).zip(velocity) {
                        *v = *momentum * *v + g;
                        *p -= lr * *v;
                    }
                }
            }
            OptimizerState::Adam {
                beta1,
                beta2,
                eps,
                m,
                v,
                t,
            } => {
                *t += 1;
                let bias1 = 1.0 - beta1.powi(*t);
                let bias2 = 1.0 - beta2.powi(*t);
                for (((p, &g), m), v) in params.iter_mut().zip(grad.iter()).zip(m).zip(v) {
                    *m = *beta1 * *m + (1.0 - *beta1) * g;
                    *v = *beta2 * *v + (1.0 - *beta2) * g * g;
                    *p -= lr * (*m / bias1) / ((*v / bias2).sqrt() + *eps);
                }
            }
        }
    }
}
