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

/// Output widths are padded to a multiple of this many lanes, so every inner loop runs over
/// whole chunks of 8 floats with no scalar tail (a 10-class layer would otherwise spend most of
/// its time in loop control).
const LANES: usize = 8;

/// One dense layer's place in the flat parameter vector: weight `[inputs, outputs]` row-major,
/// then bias `[outputs]`; `stride` is `outputs` padded to [`LANES`].
#[derive(Debug, Clone, Copy)]
struct Layer {
    inputs: usize,
    outputs: usize,
    stride: usize,
    weight: usize,
    bias: usize,
}

/// Workspace for the passes of one network over batches of up to `capacity` rows, reused from
/// step to step. Every per-layer buffer is `stride` wide, padded with zeros.
pub(crate) struct DenseNet {
    layers: Vec<Layer>,
    /// Each layer's weights `inputs × stride` and bias, copied from the parameters per step.
    weights: Vec<Vec<f32>>,
    biases: Vec<Vec<f32>>,
    /// Each layer's weight gradient, `inputs × stride`.
    weight_grads: Vec<Vec<f32>>,
    /// Pre-activations of each layer, `rows × stride`.
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
                    stride: w[1].div_ceil(LANES) * LANES,
                    weight: offset,
                    bias: offset + w[0] * w[1],
                };
                offset += w[0] * w[1] + w[1];
                layer
            })
            .collect();
        let widest = layers
            .iter()
            .map(|l| l.stride.max(l.inputs))
            .max()
            .unwrap_or(0);
        DenseNet {
            weights: layers
                .iter()
                .map(|l| vec![0.0; l.inputs * l.stride])
                .collect(),
            biases: layers.iter().map(|l| vec![0.0; l.stride]).collect(),
            weight_grads: layers
                .iter()
                .map(|l| vec![0.0; l.inputs * l.stride])
                .collect(),
            z: layers
                .iter()
                .map(|l| vec![0.0; capacity * l.stride])
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
        for (l, layer) in self.layers.iter().enumerate() {
            let weight = &params[layer.weight..layer.weight + layer.inputs * layer.outputs];
            for (padded, row) in self.weights[l]
                .chunks_exact_mut(layer.stride)
                .zip(weight.chunks_exact(layer.outputs))
            {
                padded[..layer.outputs].copy_from_slice(row);
            }
            self.biases[l][..layer.outputs]
                .copy_from_slice(&params[layer.bias..layer.bias + layer.outputs]);
        }
        // Forward: z_l = a_{l-1} W_l + b_l, with a = relu(z) between layers.
        for l in 0..self.layers.len() {
            let layer = self.layers[l];
            let (before, rest) = self.z.split_at_mut(l);
            let (input, input_stride): (&[f32], usize) = if l == 0 {
                (&self.x, inputs)
            } else {
                (&before[l - 1], self.layers[l - 1].stride)
            };
            for r in 0..rows {
                let out = &mut rest[0][r * layer.stride..(r + 1) * layer.stride];
                out.copy_from_slice(&self.biases[l]);
                let a = &input[r * input_stride..r * input_stride + layer.inputs];
                for (&ak, w) in a.iter().zip(self.weights[l].chunks_exact(layer.stride)) {
                    // Hidden layers read relu(z).
                    let ak = if l > 0 { ak.max(0.0) } else { ak };
                    if ak != 0.0 {
                        axpy(out, ak, w);
                    }
                }
            }
        }
        // Loss and its gradient with respect to the output layer's pre-activations.
        let last = *self.layers.last().expect("a network has a layer");
        let logits = &self.z[self.layers.len() - 1];
        let dz = &mut self.dz[..rows * last.stride];
        dz.fill(0.0);
        let scale = 1.0 / rows as f32;
        let loss = match &data.targets {
            Targets::Classes { labels, .. } => {
                let mut total = 0.0f32;
                for (r, &row) in batch.iter().enumerate() {
                    let z = &logits[r * last.stride..r * last.stride + last.outputs];
                    let d = &mut dz[r * last.stride..r * last.stride + last.outputs];
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
                    let error = logits[r * last.stride] - values[row as usize];
                    total += error * error;
                    dz[r * last.stride] = 2.0 * error * scale;
                }
                total * scale
            }
        };
        // Backward, last layer first.
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let (input, input_stride): (&[f32], usize) = if l == 0 {
                (&self.x, inputs)
            } else {
                (&self.z[l - 1], self.layers[l - 1].stride)
            };
            let dz = &self.dz[..rows * layer.stride];
            let dw = &mut self.weight_grads[l];
            dw.fill(0.0);
            let db = &mut grad[layer.bias..layer.bias + layer.outputs];
            db.fill(0.0);
            for r in 0..rows {
                let d = &dz[r * layer.stride..(r + 1) * layer.stride];
                for (b, &g) in db.iter_mut().zip(d) {
                    *b += g;
                }
                let a = &input[r * input_stride..r * input_stride + layer.inputs];
                for (&ak, dw) in a.iter().zip(dw.chunks_exact_mut(layer.stride)) {
                    let ak = if l > 0 { ak.max(0.0) } else { ak };
                    if ak != 0.0 {
                        axpy(dw, ak, d);
                    }
                }
            }
            for (row, padded) in grad[layer.weight..layer.weight + layer.inputs * layer.outputs]
                .chunks_exact_mut(layer.outputs)
                .zip(dw.chunks_exact(layer.stride))
            {
                row.copy_from_slice(&padded[..layer.outputs]);
            }
            if l == 0 {
                break;
            }
            // dz_{l-1} = (dz_l W_lᵀ) ⊙ [z_{l-1} > 0], in the previous layer's padded layout.
            let previous = self.layers[l - 1];
            let z_before = &self.z[l - 1];
            let da = &mut self.da[..rows * previous.stride];
            da.fill(0.0);
            for ((d, da), z) in dz
                .chunks_exact(layer.stride)
                .zip(da.chunks_exact_mut(previous.stride))
                .zip(z_before.chunks_exact(previous.stride))
            {
                for ((da, &z), w) in da
                    .iter_mut()
                    .zip(z)
                    .zip(self.weights[l].chunks_exact(layer.stride))
                {
                    if z > 0.0 {
                        *da = dot(w, d);
                    }
                }
            }
            std::mem::swap(&mut self.dz, &mut self.da);
        }
        Ok(loss)
    }
}

/// `out += a · w`, over whole chunks of [`LANES`].
fn axpy(out: &mut [f32], a: f32, w: &[f32]) {
    for (o, w) in out.chunks_exact_mut(LANES).zip(w.chunks_exact(LANES)) {
        for i in 0..LANES {
            o[i] += a * w[i];
        }
    }
}

/// `Σ w·d`, lane by lane then across lanes.
fn dot(w: &[f32], d: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (w, d) in w.chunks_exact(LANES).zip(d.chunks_exact(LANES)) {
        for i in 0..LANES {
            lanes[i] += w[i] * d[i];
        }
    }
    lanes.iter().sum()
}
