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
    let twiddles = Twiddles::new(n);
    let (mut a_re, mut a_im) = (a.to_vec(), vec![0.0; n]);
    a_re.resize(n, 0.0);
    fft(&mut a_re, &mut a_im, &twiddles, false);
    let same = std::ptr::eq(a, b);
    let (b_re, b_im) = if same {
        (a_re.clone(), a_im.clone())
    } else {
        let (mut b_re, mut b_im) = (b.to_vec(), vec![0.0; n]);
        b_re.resize(n, 0.0);
        fft(&mut b_re, &mut b_im, &twiddles, false);
        (b_re, b_im)
    };
    for i in 0..n {
        let (ar, ai, br, bi) = (a_re[i], a_im[i], b_re[i], b_im[i]);
        a_re[i] = ar * br - ai * bi;
        a_im[i] = ar * bi + ai * br;
    }
    fft(&mut a_re, &mut a_im, &twiddles, true);
    a_re.truncate(out_len);
    for v in a_re.iter_mut() {
        *v = v.max(0.0);
    }
    Some(a_re)
}

struct Twiddles {
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl Twiddles {
    fn new(n: usize) -> Self {
        // Each angle computed directly (not by recurrence) to keep errors at one ulp.
        let (cos, sin) = (0..n / 2)
            .map(|k| {
                let angle = -2.0 * PI * k as f64 / n as f64;
                (angle.cos(), angle.sin())
            })
            .unzip();
        Self { cos, sin }
    }
}

/// In-place iterative Cooley–Tukey FFT (inverse includes the 1/n scaling).
fn fft(re: &mut [f64], im: &mut [f64], twiddles: &Twiddles, inverse: bool) {
    let n = re.len();
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let sign = if inverse { -1.0 } else { 1.0 };
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let stride = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let (wr, wi) = (twiddles.cos[k * stride], sign * twiddles.sin[k * stride]);
                let (i, j) = (start + k, start + k + half);
                let (xr, xi) = (re[j] * wr - im[j] * wi, re[j] * wi + im[j] * wr);
                re[j] = re[i] - xr;
                im[j] = im[i] - xi;
                re[i] += xr;
                im[i] += xi;
            }
        }
        len *= 2;
    }
    if inverse {
        let scale = 1.0 / n as f64;
        for (r, i) in re.iter_mut().zip(im.iter_mut()) {
            *r *= scale;
            *i *= scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_convolution_matches_direct() {
        let a: Vec<f64> = (0..3000).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect();
        let b: Vec<f64> = (0..2000).map(|i| ((i * 104_729) % 997) as f64 / 997.0).collect();
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
