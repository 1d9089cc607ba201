//! A small radix-2 FFT, only for convolving privacy loss distributions.

use std::f64::consts::PI;

/// Largest transform length accepted: 2^24 points (two 128 MiB buffers).
pub(crate) const MAX_FFT_LEN: usize = 1 << 24;

/// Linear convolution of two non-negative sequences. Uses the direct sum when it is cheap
/// (exact up to rounding) and an FFT otherwise; entries below zero caused by FFT rounding
/// (about 1e-16 of the largest mass) are set to zero.
///
/// Returns `None` if the FFT would exceed [`MAX_FFT_LEN`].
pub(crate) fn convolve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    if a.is_empty() || b.is_empty() {
        return Some(Vec::new());
    }
    let out_len = a.len() + b.len() - 1;
    if (a.len() as u128) * (b.len() as u128) <= 1 << 22 {
        let mut out = vec![0.0; out_len];
        for (i, &x) in a.iter().enumerate() {
            if x == 0.0 {
                continue;
            }
            for (o, &y) in out[i..].iter_mut().zip(b) {
                *o += x * y;
            }
        }
        return Some(out);
    }
    let n = out_len.next_power_of_two();
    if n > MAX_FFT_LEN {
        return None;
    }
    let twiddles = twiddles(n);
    // Forward transforms by decimation in frequency leave the spectrum in bit-reversed
    // order, which a pointwise product does not mind; the inverse by decimation in time
    // takes bit-reversed input. No bit-reversal permutation is ever done.
    let transform = |x: &[f64]| {
        let mut data = vec![[0.0f64; 2]; n];
        for (d, &v) in data.iter_mut().zip(x) {
            d[0] = v;
        }
        fft_dif(&mut data, &twiddles);
        data
    };
    let mut data = transform(a);
    if std::ptr::eq(a, b) {
        for z in data.iter_mut() {
            *z = mul(*z, *z);
        }
    } else {
        let other = transform(b);
        for (z, w) in data.iter_mut().zip(&other) {
            *z = mul(*z, *w);
        }
    }
    inverse_fft_dit(&mut data, &twiddles);
    // A NaN mass cannot be placed anywhere safe: fail the composition rather than drop it
    // (as `max(0.0)` would) and understate the privacy loss.
    if data[..out_len].iter().any(|z| z[0].is_nan()) {
        return None;
    }
    Some(data[..out_len].iter().map(|z| z[0].max(0.0)).collect())
}

fn mul(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]]
}

/// `e^{-2πik/n}` for `k < n/2`, each computed directly (not by recurrence) to keep errors
/// at one ulp.
fn twiddles(n: usize) -> Vec<[f64; 2]> {
    (0..n / 2)
        .map(|k| {
            let angle = -2.0 * PI * k as f64 / n as f64;
            [angle.cos(), angle.sin()]
        })
        .collect()
}

/// In-place forward FFT by decimation in frequency (Gentleman–Sande): natural-order input,
/// bit-reversed output. Recursive, so that once a block fits in cache all its remaining
/// stages run there: main memory is swept about log2(n / cache size) times, not log2(n).
fn fft_dif(data: &mut [[f64; 2]], twiddles: &[[f64; 2]]) {
    fn recurse(data: &mut [[f64; 2]], twiddles: &[[f64; 2]], stride: usize) {
        let half = data.len() / 2;
        if half == 0 {
            return;
        }
        let (left, right) = data.split_at_mut(half);
        for (k, (x, y)) in left.iter_mut().zip(right.iter_mut()).enumerate() {
            let w = twiddles[k * stride];
            let diff = [x[0] - y[0], x[1] - y[1]];
            *x = [x[0] + y[0], x[1] + y[1]];
            *y = mul(diff, w);
        }
        recurse(left, twiddles, stride * 2);
        recurse(right, twiddles, stride * 2);
    }
    recurse(data, twiddles, 1);
}

/// In-place inverse FFT by decimation in time (Cooley–Tukey): bit-reversed input,
/// natural-order output, including the 1/n scaling. Recursive like [`fft_dif`].
fn inverse_fft_dit(data: &mut [[f64; 2]], twiddles: &[[f64; 2]]) {
    fn recurse(data: &mut [[f64; 2]], twiddles: &[[f64; 2]], stride: usize) {
        let half = data.len() / 2;
        if half == 0 {
            return;
        }
        let (left, right) = data.split_at_mut(half);
        recurse(left, twiddles, stride * 2);
        recurse(right, twiddles, stride * 2);
        for (k, (x, y)) in left.iter_mut().zip(right.iter_mut()).enumerate() {
            let w = twiddles[k * stride];
            let t = mul([w[0], -w[1]], *y);
            *y = [x[0] - t[0], x[1] - t[1]];
            *x = [x[0] + t[0], x[1] + t[1]];
        }
    }
    recurse(data, twiddles, 1);
    let scale = 1.0 / data.len() as f64;
    for z in data.iter_mut() {
        z[0] *= scale;
        z[1] *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_convolution_matches_direct() {
        let a: Vec<f64> = (0..3000)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let b: Vec<f64> = (0..2000)
            .map(|i| ((i * 104_729) % 997) as f64 / 997.0)
            .collect();
        let fast = convolve(&a, &b).unwrap();
        let mut direct = vec![0.0; a.len() + b.len() - 1];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                direct[i + j] += x * y;
            }
        }
        for (f, d) in fast.iter().zip(&direct) {
            assert!((f - d).abs() < 1e-9 * d.abs().max(1.0), "{f} vs {d}");
        }
    }
}
