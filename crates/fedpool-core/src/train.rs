//! Local training on one node's rows: mini-batch SGD with momentum or Adam, local epochs, and
//! FedProx's proximal term.
//!
//! Dense networks (logistic and linear regression, MLPs) get their gradients from direct
//! kernels over the flat parameter vector (`model::dense`); candle's autograd computes the
//! CNN's. The optimizer runs on the flat vector in plain Rust, which keeps parameters
//! contiguous (what strategies, DP and secure aggregation consume) and avoids a dozen small
//! tensor ops per step.

use candle_core::{Device, Tensor};
use fedpool_data::{Dataset, Targets};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::{BatchTargets, DenseNet, Network};

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
    train_local_with(network, global, data, config, rng, false)
}

/// [`train_local`], on candle's autograd even for a dense network when `force_candle`: the
/// reference the direct kernels are tested and benchmarked against.
#[doc(hidden)]
pub fn train_local_with(
    network: &Network,
    global: &[f32],
    data: &Dataset,
    config: &LocalTraining,
    rng: &mut impl Rng,
    force_candle: bool,
) -> Result<TrainOutcome, Error> {
    network.check_len(global)?;
    validate_data(network, data)?;
    if config.batch_size == 0 {
        return Err(Error::Model(
            "training.batch_size must be at least 1".into(),
        ));
    }
    let n_rows = data.n_rows();
    let mut backend = match network.dense_widths() {
        Some(widths) if !force_candle => {
            Backend::Dense(DenseNet::new(&widths, config.batch_size.min(n_rows)))
        }
        _ => Backend::candle(data)?,
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
            let batch_loss = backend.loss_and_gradient(network, &params, data, batch, &mut grad)?;
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

/// What computes a batch's loss and gradient: the direct dense kernels, or candle's autograd
/// (the CNN, and the reference the kernels are tested against).
enum Backend {
    Dense(DenseNet),
    Candle { x_all: Tensor, y_all: BatchTargets },
}

impl Backend {
    fn candle(data: &Dataset) -> Result<Backend, Error> {
        let n_rows = data.n_rows();
        let device = Device::Cpu;
        let x_all = Tensor::from_slice(&data.features, (n_rows, data.n_features), &device)?;
        let y_all = match &data.targets {
            Targets::Classes { labels, .. } => {
                BatchTargets::Classes(Tensor::from_slice(labels, n_rows, &device)?)
            }
            Targets::Real(values) => {
                BatchTargets::Real(Tensor::from_slice(values, n_rows, &device)?)
            }
        };
        Ok(Backend::Candle { x_all, y_all })
    }

    fn loss_and_gradient(
        &mut self,
        network: &Network,
        params: &[f32],
        data: &Dataset,
        batch: &[u32],
        grad: &mut [f32],
    ) -> Result<f32, Error> {
        let (x_all, y_all) = match self {
            Backend::Dense(dense) => return dense.loss_and_gradient(params, data, batch, grad),
            Backend::Candle { x_all, y_all } => (x_all, y_all),
        };
        let device = Device::Cpu;
        let (x, y) = if batch.len() == data.n_rows() {
            (x_all.clone(), y_all.clone_ref())
        } else {
            let idx = Tensor::from_slice(batch, batch.len(), &device)?;
            (x_all.index_select(&idx, 0)?, y_all.select(&idx)?)
        };
        let vars = network.vars(params, &device)?;
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
        network.flatten_into(&grad_tensors, grad)?;
        Ok(loss.to_scalar::<f32>()?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metrics, ModelSpec, evaluate_outputs};
    use fedpool_data::Targets;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Two separable classes in `side`² pixels: the left half bright for class 0, the right
    /// half for class 1, with noise.
    fn two_classes(n_rows: usize, side: usize, rng: &mut ChaCha20Rng) -> Dataset {
        let n_features = side * side;
        let mut features = Vec::with_capacity(n_rows * n_features);
        let mut labels = Vec::with_capacity(n_rows);
        for row in 0..n_rows {
            let label = (row % 2) as u32;
            for pixel in 0..n_features {
                let bright = (pixel % side < side / 2) == (label == 0);
                let base = if bright { 1.0 } else { 0.0 };
                features.push(base + rng.random_range(-0.3f32..0.3));
            }
            labels.push(label);
        }
        Dataset {
            features,
            n_features,
            targets: Targets::Classes {
                labels,
                n_classes: 2,
            },
        }
    }

    fn log_loss(network: &Network, params: &[f32], data: &Dataset) -> f64 {
        let outputs = network.predict(params, &data.features).unwrap();
        match evaluate_outputs(&outputs, &data.targets) {
            Metrics::Classification { log_loss, .. } => log_loss,
            Metrics::Regression { .. } => unreachable!("a classification dataset"),
        }
    }

    /// A regression set: y = Σ x_k·k/n + noise.
    fn regression(n_rows: usize, n_features: usize, rng: &mut ChaCha20Rng) -> Dataset {
        let mut features = Vec::with_capacity(n_rows * n_features);
        let mut values = Vec::with_capacity(n_rows);
        for _ in 0..n_rows {
            let mut y = rng.random_range(-0.1f32..0.1);
            for k in 0..n_features {
                let x = rng.random_range(-1.0f32..1.0);
                y += x * k as f32 / n_features as f32;
                features.push(x);
            }
            values.push(y);
        }
        Dataset {
            features,
            n_features,
            targets: Targets::Real(values),
        }
    }

    #[test]
    fn the_dense_kernels_train_as_candles_autograd_does() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let classes = two_classes(37, 4, &mut rng);
        let real = regression(29, 6, &mut rng);
        let cases: [(ModelSpec, &Dataset, Optimizer, f32, f32); 5] = [
            (
                ModelSpec::LogisticRegression,
                &classes,
                Optimizer::Sgd { momentum: 0.9 },
                1e-3,
                0.0,
            ),
            (
                ModelSpec::LogisticRegression,
                &classes,
                Optimizer::Sgd { momentum: 0.0 },
                0.0,
                0.1,
            ),
            (
                ModelSpec::Mlp { hidden: vec![8, 5] },
                &classes,
                Optimizer::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                },
                1e-4,
                0.01,
            ),
            (
                ModelSpec::LinearRegression,
                &real,
                Optimizer::Sgd { momentum: 0.5 },
                0.0,
                0.0,
            ),
            (
                ModelSpec::Mlp { hidden: vec![7] },
                &real,
                Optimizer::Sgd { momentum: 0.9 },
                0.0,
                0.0,
            ),
        ];
        for (spec, data, optimizer, weight_decay, proximal_mu) in cases {
            let n_outputs = match &data.targets {
                Targets::Classes { n_classes, .. } => *n_classes,
                Targets::Real(_) => 1,
            };
            let network = Network::new(&spec, data.n_features, n_outputs).unwrap();
            // Start away from zero so every unit of the MLPs is active somewhere.
            let global = network.init_params(&mut ChaCha20Rng::seed_from_u64(9));
            let config = LocalTraining {
                local_epochs: 3,
                batch_size: 8,
                learning_rate: 0.05,
                optimizer,
                weight_decay,
                proximal_mu,
            };
            let run = |candle| {
                let mut rng = ChaCha20Rng::seed_from_u64(11);
                train_local_with(&network, &global, data, &config, &mut rng, candle).unwrap()
            };
            let (kernels, autograd) = (run(false), run(true));
            assert_eq!(kernels.n_steps, autograd.n_steps);
            assert_eq!(kernels.n_steps, 3 * data.n_rows().div_ceil(8));
            let worst = kernels
                .delta
                .iter()
                .zip(&autograd.delta)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1e-2))
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{spec:?}: parameters differ by {worst} (relative)"
            );
            assert!(
                (kernels.final_loss - autograd.final_loss).abs()
                    < 1e-5 * autograd.final_loss.max(1.0),
                "{spec:?}: loss {} vs {}",
                kernels.final_loss,
                autograd.final_loss
            );
        }
    }

    #[test]
    fn every_model_and_optimizer_lowers_the_training_loss() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let data = two_classes(64, 8, &mut rng);
        let adam = Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let cases = [
            (
                ModelSpec::LogisticRegression,
                Optimizer::Sgd { momentum: 0.9 },
                0.1,
            ),
            (
                ModelSpec::Mlp { hidden: vec![16] },
                Optimizer::Sgd { momentum: 0.9 },
                0.1,
            ),
            (
                ModelSpec::Cnn { channels: [4, 8] },
                Optimizer::Sgd { momentum: 0.9 },
                0.05,
            ),
            (ModelSpec::Mlp { hidden: vec![16] }, adam, 0.01),
        ];
        for (spec, optimizer, learning_rate) in cases {
            let network = Network::new(&spec, 64, 2).unwrap();
            let start = network.init_params(&mut rng);
            let config = LocalTraining {
                local_epochs: 3,
                batch_size: 16,
                learning_rate,
                optimizer,
                ..LocalTraining::default()
            };
            let outcome = train_local(&network, &start, &data, &config, &mut rng).unwrap();
            let trained: Vec<f32> = start
                .iter()
                .zip(&outcome.delta)
                .map(|(s, d)| s + d)
                .collect();
            let (before, after) = (
                log_loss(&network, &start, &data),
                log_loss(&network, &trained, &data),
            );
            assert!(
                after < 0.8 * before,
                "{spec:?} with {optimizer:?}: loss {before:.4} -> {after:.4}"
            );
            assert_eq!(outcome.n_examples, 64);
            assert_eq!(outcome.n_steps, 3 * 4);
        }
    }

    #[test]
    fn fedprox_mu_keeps_the_local_model_nearer_the_global_one() {
        // With μ ignored the two runs would be identical; with it the proximal term pulls every
        // step back towards the global parameters, so the update is shorter.
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let data = two_classes(64, 8, &mut rng);
        let network = Network::new(&ModelSpec::Mlp { hidden: vec![8] }, 64, 2).unwrap();
        let global = network.init_params(&mut rng);
        let norm = |mu: f32| {
            let config = LocalTraining {
                local_epochs: 5,
                batch_size: 16,
                learning_rate: 0.1,
                proximal_mu: mu,
                ..LocalTraining::default()
            };
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            let delta = train_local(&network, &global, &data, &config, &mut rng)
                .unwrap()
                .delta;
            delta
                .iter()
                .map(|d| f64::from(*d).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let (free, proximal, strong) = (norm(0.0), norm(1.0), norm(10.0));
        assert!(proximal < free, "μ = 1: {proximal} vs {free}");
        assert!(strong < proximal, "μ = 10: {strong} vs {proximal}");
    }
}
