//! Forward and backward passes of dense networks (logistic and linear regression, MLPs with
//! ReLU) written directly over the flat parameter vector.
//!
//! A federated client holds few rows: on digits a local step is a 14 × 64 by 64 × 10 product,
//! about 30 thousand multiply-adds, and building a candle graph for it (tensors, a tape, a
//! gradient map) costs ten times the arithmetic. These loops do the same mathematics with no
//! allocation per step: candle still runs the CNN and every prediction. Sums run in a fixed
//! order, so a run is deterministic; it is not bit-identical to candle's (whose matrix
//! products sum in another order), and agrees with it to float rounding (tested).

use fedpool_data::{Dataset, Targets};

use crate::Error;

/// One dense layer's place in the flat parameter vector: weight `[inputs, outputs]` row-major,
/// then bias `[outputs]`.
#[derive(Debug, Clone, Copy)]
struct Layer {
    inputs: usize,
    outputs: usize,
    weight: usize,
    bias: usize,
}

/// Workspace for the passes of one network over batches of up to `capacity` rows, reused from
/// step to step.
pub(crate) struct DenseNet {
    layers: Vec<Layer>,
    /// Pre-activations of each layer, `rows × outputs`.
    z: Vec<Vec<f32>>,
    /// Gradient of the loss with respect to the current layer's pre-activations.
    dz: Vec<f32>,
    /// Gradient with respect to the current layer's inputs.
    da: Vec<f32>,
    /// The batch's input rows, gathered contiguously.
    x: Vec<f32>,
}

impl DenseNet {
    /// The layers of a network with these widths (inputs, hidden…, outputs), laid out as
    /// `Network` lays them out.
    pub(crate) fn new(widths: &[usize], capacity: usize) -> DenseNet {
        let mut offset = 0;
        let layers: Vec<Layer> = widths
            .windows(2)
            .map(|w| {
                let layer = Layer {
                    inputs: w[0],
                    outputs: w[1],
                    weight: offset,
                    bias: offset + w[0] * w[1],
                };
                offset += w[0] * w[1] + w[1];
                layer
            })
            .collect();
        let widest = widths.iter().copied().max().unwrap_or(0);
        DenseNet {
            z: layers
                .iter()
                .map(|l| vec![0.0; capacity * l.outputs])
                .collect(),
            dz: vec![0.0; capacity * widest],
            da: vec![0.0; capacity * widest],
            x: vec![0.0; capacity * widths[0]],
            layers,
        }
    }

    /// Loss of `params` on the rows `batch` of `data` (mean cross-entropy for classes, mean
    /// squared error for real targets), with its gradient written into `grad`.
    pub(crate) fn loss_and_gradient(
        &mut self,
        params: &[f32],
        data: &Dataset,
        batch: &[u32],
        grad: &mut [f32],
    ) -> Result<f32, Error> {
        let rows = batch.len();
        let inputs = self.layers[0].inputs;
        for (r, &row) in batch.iter().enumerate() {
            let row = row as usize;
            self.x[r * inputs..(r + 1) * inputs]
                .copy_from_slice(&data.features[row * inputs..(row + 1) * inputs]);
        }
        // Forward: z_l = a_{l-1} W_l + b_l, with a = relu(z) between layers.
        for l in 0..self.layers.len() {
            let layer = self.layers[l];
            let (before, rest) = self.z.split_at_mut(l);
            let input: &[f32] = if l == 0 {
                &self.x[..rows * inputs]
            } else {
                &before[l - 1][..rows * layer.inputs]
            };
            let out = &mut rest[0][..rows * layer.outputs];
            affine(input, params, layer, rows, out, l > 0);
        }
        // Loss and its gradient with respect to the output layer's pre-activations.
        let last = *self.layers.last().expect("a network has a layer");
        let logits = &self.z[self.layers.len() - 1][..rows * last.outputs];
        let dz = &mut self.dz[..rows * last.outputs];
        let scale = 1.0 / rows as f32;
        let loss = match &data.targets {
            Targets::Classes { labels, .. } => {
                let mut total = 0.0f32;
                for (r, &row) in batch.iter().enumerate() {
                    let z = &logits[r * last.outputs..(r + 1) * last.outputs];
                    let d = &mut dz[r * last.outputs..(r + 1) * last.outputs];
                    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0f32;
                    for (d, &v) in d.iter_mut().zip(z) {
                        *d = (v - max).exp();
                        sum += *d;
                    }
                    let label = labels[row as usize] as usize;
                    total += sum.ln() + max - z[label];
                    for d in d.iter_mut() {
                        *d *= scale / sum;
                    }
                    d[label] -= scale;
                }
                total * scale
            }
            Targets::Real(values) => {
                let mut total = 0.0f32;
                for (r, &row) in batch.iter().enumerate() {
                    let error = logits[r] - values[row as usize];
                    total += error * error;
                    dz[r] = 2.0 * error * scale;
                }
                total * scale
            }
        };
        // Backward, last layer first.
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let input: &[f32] = if l == 0 {
                &self.x[..rows * inputs]
            } else {
                &self.z[l - 1][..rows * layer.inputs]
            };
            let dz = &self.dz[..rows * layer.outputs];
            let (dw, rest) = grad[layer.weight..].split_at_mut(layer.inputs * layer.outputs);
            let db = &mut rest[..layer.outputs];
            dw.fill(0.0);
            db.fill(0.0);
            for r in 0..rows {
                let d = &dz[r * layer.outputs..(r + 1) * layer.outputs];
                for (b, &g) in db.iter_mut().zip(d) {
                    *b += g;
                }
                let a = &input[r * layer.inputs..(r + 1) * layer.inputs];
                for (k, &ak) in a.iter().enumerate() {
                    // The input is relu(z) for hidden layers: zero where z ≤ 0.
                    let ak = if l > 0 { ak.max(0.0) } else { ak };
                    if ak == 0.0 {
                        continue;
                    }
                    let w = &mut dw[k * layer.outputs..(k + 1) * layer.outputs];
                    for (w, &g) in w.iter_mut().zip(d) {
                        *w += ak * g;
                    }
                }
            }
            if l == 0 {
                break;
            }
            // dz_{l-1} = (dz_l W_lᵀ) ⊙ [z_{l-1} > 0]
            let weight = &params[layer.weight..layer.weight + layer.inputs * layer.outputs];
            let z_before = &self.z[l - 1];
            let da = &mut self.da[..rows * layer.inputs];
            for r in 0..rows {
                let d = &dz[r * layer.outputs..(r + 1) * layer.outputs];
                for k in 0..layer.inputs {
                    let w = &weight[k * layer.outputs..(k + 1) * layer.outputs];
                    let dot: f32 = w.iter().zip(d).map(|(w, g)| w * g).sum();
                    da[r * layer.inputs + k] = if z_before[r * layer.inputs + k] > 0.0 {
                        dot
                    } else {
                        0.0
                    };
                }
            }
            std::mem::swap(&mut self.dz, &mut self.da);
        }
        Ok(loss)
    }
}

/// `out = relu?(input) W + b` for `rows` rows.
fn affine(input: &[f32], params: &[f32], layer: Layer, rows: usize, out: &mut [f32], relu: bool) {
    let weight = &params[layer.weight..layer.weight + layer.inputs * layer.outputs];
    let bias = &params[layer.bias..layer.bias + layer.outputs];
    for r in 0..rows {
        let o = &mut out[r * layer.outputs..(r + 1) * layer.outputs];
        o.copy_from_slice(bias);
        let a = &input[r * layer.inputs..(r + 1) * layer.inputs];
        for (k, &ak) in a.iter().enumerate() {
            let ak = if relu { ak.max(0.0) } else { ak };
            if ak == 0.0 {
                continue;
            }
            let w = &weight[k * layer.outputs..(k + 1) * layer.outputs];
            for (o, &w) in o.iter_mut().zip(w) {
                *o += ak * w;
            }
        }
    }
}
