//! Model architectures over one flat parameter vector.
//!
//! A [`Network`] holds only the architecture. Parameters live in a contiguous `Vec<f32>`
//! (layer by layer, weight then bias, each row-major), so strategies, differential privacy and
//! secure aggregation all work on the same vector, and loading parameters back is exact.

use candle_core::{D, Device, Tensor, Var};
use rand::Rng;

use super::ModelSpec;
use crate::Error;

/// One parameter tensor's place in the flat vector.
#[derive(Debug, Clone, PartialEq)]
struct ParamSlot {
    shape: Vec<usize>,
    offset: usize,
    /// Fan-in used for the PyTorch-style uniform(±1/√fan_in) initialisation.
    fan_in: usize,
}

impl ParamSlot {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An architecture: the model spec resolved against input and output widths.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    spec: ModelSpec,
    n_inputs: usize,
    n_outputs: usize,
    slots: Vec<ParamSlot>,
    n_params: usize,
}

impl Network {
    /// Resolves `spec` for `n_inputs` features and `n_outputs` outputs (classes, or 1 for
    /// regression).
    pub fn new(spec: &ModelSpec, n_inputs: usize, n_outputs: usize) -> Result<Network, Error> {
        if n_inputs == 0 || n_outputs == 0 {
            return Err(Error::Model(format!(
                "a model needs at least one input and one output, got {n_inputs} inputs and {n_outputs} outputs"
            )));
        }
        let mut shapes: Vec<(Vec<usize>, usize)> = Vec::new();
        let dense = |inp: usize, out: usize, shapes: &mut Vec<(Vec<usize>, usize)>| {
            shapes.push((vec![inp, out], inp));
            shapes.push((vec![out], inp));
        };
        match spec {
            ModelSpec::LogisticRegression | ModelSpec::LinearRegression => {
                dense(n_inputs, n_outputs, &mut shapes);
            }
            ModelSpec::Mlp { hidden } => {
                if let Some(pos) = hidden.iter().position(|&h| h == 0) {
                    return Err(Error::Model(format!(
                        "model.hidden[{pos}] is 0; every hidden layer needs at least one unit"
                    )));
                }
                let mut width = n_inputs;
                for &h in hidden {
                    dense(width, h, &mut shapes);
                    width = h;
                }
                dense(width, n_outputs, &mut shapes);
            }
            ModelSpec::Cnn { channels } => {
                let side = image_side(n_inputs)?;
                let [c1, c2] = *channels;
                if c1 == 0 || c2 == 0 {
                    return Err(Error::Model("model.channels must both be ≥ 1".into()));
                }
                shapes.push((vec![c1, 1, 3, 3], 9));
                shapes.push((vec![c1], 9));
                shapes.push((vec![c2, c1, 3, 3], 9 * c1));
                shapes.push((vec![c2], 9 * c1));
                dense(c2 * (side / 4) * (side / 4), n_outputs, &mut shapes);
            }
        }
        let mut offset = 0;
        let slots = shapes
            .into_iter()
            .map(|(shape, fan_in)| {
                let slot = ParamSlot {
                    shape,
                    offset,
                    fan_in,
                };
                offset += slot.len();
                slot
            })
            .collect();
        Ok(Network {
            spec: spec.clone(),
            n_inputs,
            n_outputs,
            slots,
            n_params: offset,
        })
    }

    /// The spec this network was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Input width.
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// Output width.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Length of the flat parameter vector.
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Fresh parameters. Linear models (logistic and linear regression) start at zero, as
    /// scikit-learn's and the numpy reference's do: their loss is convex, so nothing needs
    /// breaking symmetry, and a random start only adds noise that hides a small early signal.
    /// Networks with hidden layers draw weights uniform in ±1/√fan_in (PyTorch's default),
    /// biases likewise.
    pub fn init_params(&self, rng: &mut impl Rng) -> Vec<f32> {
        let mut params = vec![0f32; self.n_params];
        if matches!(
            self.spec,
            ModelSpec::LogisticRegression | ModelSpec::LinearRegression
        ) {
            return params;
        }
        for slot in &self.slots {
            let bound = 1.0 / (slot.fan_in as f32).sqrt();
            for p in &mut params[slot.offset..slot.offset + slot.len()] {
                *p = rng.random_range(-bound..bound);
            }
        }
        params
    }

    /// Wraps the flat vector as one candle `Var` per parameter tensor, for autograd.
    /// The layer widths (inputs, hidden…, outputs) of a dense network, which the direct
    /// kernels train; `None` for the CNN, which candle trains.
    pub(crate) fn dense_widths(&self) -> Option<Vec<usize>> {
        match &self.spec {
            ModelSpec::LogisticRegression | ModelSpec::LinearRegression => {
                Some(vec![self.n_inputs, self.n_outputs])
            }
            ModelSpec::Mlp { hidden } => {
                let mut widths = vec![self.n_inputs];
                widths.extend(hidden);
                widths.push(self.n_outputs);
                Some(widths)
            }
            ModelSpec::Cnn { .. } => None,
        }
    }

    pub(crate) fn vars(&self, params: &[f32], device: &Device) -> Result<Vec<Var>, Error> {
        self.check_len(params)?;
        self.slots
            .iter()
            .map(|s| {
                Var::from_slice(
                    &params[s.offset..s.offset + s.len()],
                    s.shape.as_slice(),
                    device,
                )
                .map_err(Error::from)
            })
            .collect()
    }

    /// Copies gradients (one per parameter tensor, in slot order) into one flat vector.
    pub(crate) fn flatten_into(&self, tensors: &[&Tensor], out: &mut [f32]) -> Result<(), Error> {
        for (slot, t) in self.slots.iter().zip(tensors) {
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            out[slot.offset..slot.offset + slot.len()].copy_from_slice(&values);
        }
        Ok(())
    }

    pub(crate) fn check_len(&self, params: &[f32]) -> Result<(), Error> {
        if params.len() != self.n_params {
            return Err(Error::Model(format!(
                "parameter vector has {} values, the model needs {}",
                params.len(),
                self.n_params
            )));
        }
        Ok(())
    }

    /// Forward pass: logits (classification) or predictions (regression), `n × n_outputs`.
    pub(crate) fn forward(&self, params: &[&Tensor], x: &Tensor) -> Result<Tensor, Error> {
        let p = |i: usize| params[i];
        let out = match &self.spec {
            ModelSpec::LogisticRegression | ModelSpec::LinearRegression => {
                x.matmul(p(0))?.broadcast_add(p(1))?
            }
            ModelSpec::Mlp { hidden } => {
                let mut h = x.clone();
                for layer in 0..hidden.len() {
                    h = h
                        .matmul(p(2 * layer))?
                        .broadcast_add(p(2 * layer + 1))?
                        .relu()?;
                }
                let last = 2 * hidden.len();
                h.matmul(p(last))?.broadcast_add(p(last + 1))?
            }
            ModelSpec::Cnn { .. } => {
                let side = image_side(self.n_inputs)?;
                let n = x.dim(0)?;
                let img = x.reshape((n, 1, side, side))?;
                let h = img
                    .conv2d(p(0), 1, 1, 1, 1)?
                    .broadcast_add(&p(1).reshape((1, (), 1, 1))?)?
                    .relu()?
                    .max_pool2d(2)?;
                let h = h
                    .conv2d(p(2), 1, 1, 1, 1)?
                    .broadcast_add(&p(3).reshape((1, (), 1, 1))?)?
                    .relu()?
                    .max_pool2d(2)?;
                h.flatten_from(1)?.matmul(p(4))?.broadcast_add(p(5))?
            }
        };
        Ok(out)
    }

    /// Runs the model on row-major `features` (`n_rows × n_inputs`) and returns
    /// `n_rows × n_outputs` outputs, row-major. Softmax is not applied.
    pub fn predict(&self, params: &[f32], features: &[f32]) -> Result<Vec<f32>, Error> {
        self.check_len(params)?;
        if !features.len().is_multiple_of(self.n_inputs) {
            return Err(Error::Model(format!(
                "feature matrix of {} values is not a multiple of the input width {}",
                features.len(),
                self.n_inputs
            )));
        }
        let device = Device::Cpu;
        let tensors: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| {
                Tensor::from_slice(
                    &params[s.offset..s.offset + s.len()],
                    s.shape.as_slice(),
                    &device,
                )
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let n_rows = features.len() / self.n_inputs;
        let mut out = Vec::with_capacity(n_rows * self.n_outputs);
        // Chunked so a CNN over 10k images never materialises every activation at once.
        const CHUNK_ROWS: usize = 1024;
        for start in (0..n_rows).step_by(CHUNK_ROWS) {
            let rows = CHUNK_ROWS.min(n_rows - start);
            let x = Tensor::from_slice(
                &features[start * self.n_inputs..(start + rows) * self.n_inputs],
                (rows, self.n_inputs),
                &device,
            )?;
            let y = self.forward(&refs, &x)?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Mean training loss of a batch: cross-entropy for classes, mean squared error otherwise.
    pub(crate) fn loss(&self, outputs: &Tensor, targets: &BatchTargets) -> Result<Tensor, Error> {
        Ok(match targets {
            BatchTargets::Classes(labels) => candle_nn::loss::cross_entropy(outputs, labels)?,
            BatchTargets::Real(values) => {
                candle_nn::loss::mse(&outputs.squeeze(D::Minus1)?, values)?
            }
        })
    }
}

/// Batch targets as tensors.
pub(crate) enum BatchTargets {
    /// `u32` class indices, shape `(n,)`.
    Classes(Tensor),
    /// `f32` values, shape `(n,)`.
    Real(Tensor),
}

fn image_side(n_inputs: usize) -> Result<usize, Error> {
    let side = (n_inputs as f64).sqrt().round() as usize;
    if side * side != n_inputs || !side.is_multiple_of(4) {
        return Err(Error::Model(format!(
            "a CNN needs a square image whose side is a multiple of 4; {n_inputs} inputs is not one"
        )));
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn linear_models_start_at_zero_and_networks_with_hidden_layers_do_not() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for spec in [ModelSpec::LogisticRegression, ModelSpec::LinearRegression] {
            let network =
                Network::new(&spec, 64, if spec.is_regression() { 1 } else { 10 }).unwrap();
            let params = network.init_params(&mut rng);
            assert_eq!(params.len(), network.n_params());
            assert!(params.iter().all(|&p| p == 0.0), "{spec:?}");
        }
        let mlp = Network::new(&ModelSpec::Mlp { hidden: vec![16] }, 64, 10).unwrap();
        let params = mlp.init_params(&mut rng);
        let bound = 1.0 / 8.0; // 1/√64 for the first layer
        assert!(params.iter().any(|&p| p != 0.0));
        assert!(params[..64 * 16].iter().all(|&p| p.abs() <= bound));
    }
}
