//! Perceptual hash and average colour, both computed from the thumb (they need no more detail).

use crate::Pixels;

const SIDE: usize = 32;
const KEEP: usize = 8;

/// A 64-bit DCT perceptual hash (pHash): the image is reduced to 32x32 luma, transformed with a
/// 2-D DCT-II, and each of the 8x8 lowest frequencies becomes one bit: set when above the median
/// of those 64 coefficients (bit 63 is frequency (0,0), row-major). Near-duplicates (re-encodes,
/// resizes, small edits) differ in a few bits; compare with the Hamming distance.
pub fn phash(pixels: &Pixels) -> u64 {
    let luma = luma_grid(pixels);
    let basis: Vec<f64> = (0..KEEP)
        .flat_map(|u| {
            (0..SIDE).map(move |x| {
                (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * SIDE) as f64).cos()
            })
        })
        .collect();
    // Rows first, keeping only the low frequencies, then columns.
    let mut rows = [[0f64; KEEP]; SIDE];
    for (y, row) in rows.iter_mut().enumerate() {
        for (u, out) in row.iter_mut().enumerate() {
            *out = (0..SIDE)
                .map(|x| luma[y * SIDE + x] * basis[u * SIDE + x])
                .sum();
        }
    }
    let mut coefficients = [0f64; KEEP * KEEP];
    for v in 0..KEEP {
        for u in 0..KEEP {
            coefficients[v * KEEP + u] = (0..SIDE).map(|y| rows[y][u] * basis[v * SIDE + y]).sum();
        }
    }
    let mut sorted = coefficients;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    coefficients
        .iter()
        .fold(0u64, |bits, &c| (bits << 1) | u64::from(c > median))
}

/// Box-filters the image to a 32x32 grid of luma (BT.601 weights), alpha composited on white.
fn luma_grid(p: &Pixels) -> Vec<f64> {
    let (w, h, c) = (p.width as usize, p.height as usize, p.channels as usize);
    let mut sums = vec![0f64; SIDE * SIDE];
    let mut counts = vec![0u32; SIDE * SIDE];
    for y in 0..h {
        let gy = y * SIDE / h;
        for x in 0..w {
            let gx = x * SIDE / w;
            let px = &p.data[(y * w + x) * c..][..c];
            let [r, g, b] = over_white(px);
            sums[gy * SIDE + gx] += 0.299 * r + 0.587 * g + 0.114 * b;
            counts[gy * SIDE + gx] += 1;
        }
    }
    // Images smaller than 32 px on a side leave cells empty: fill each from its source pixel.
    (0..SIDE * SIDE)
        .map(|i| {
            if counts[i] > 0 {
                sums[i] / f64::from(counts[i])
            } else {
                let (gy, gx) = (i / SIDE, i % SIDE);
                let px = &p.data[((gy * h / SIDE) * w + gx * w / SIDE) * c..][..c];
                let [r, g, b] = over_white(px);
                0.299 * r + 0.587 * g + 0.114 * b
            }
        })
        .collect()
}

fn over_white(px: &[u8]) -> [f64; 3] {
    let a = if px.len() == 4 {
        f64::from(px[3]) / 255.0
    } else {
        1.0
    };
    [0, 1, 2].map(|i| f64::from(px[i]) * a + 255.0 * (1.0 - a))
}

/// The mean colour as `#rrggbb`, weighting each pixel by its opacity.
pub fn average_color(p: &Pixels) -> String {
    let c = p.channels as usize;
    let (mut sum, mut weight) = ([0f64; 3], 0f64);
    for px in p.data.chunks_exact(c) {
        let a = if c == 4 {
            f64::from(px[3]) / 255.0
        } else {
            1.0
        };
        for i in 0..3 {
            sum[i] += f64::from(px[i]) * a;
        }
        weight += a;
    }
    if weight == 0.0 {
        return "#000000".to_owned();
    }
    let [r, g, b] = sum.map(|s| (s / weight).round().clamp(0.0, 255.0) as u8);
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth pattern defined on normalised coordinates, so any size shows the same picture.
    fn pattern(w: u32, h: u32, mirror: bool) -> Pixels {
        let data = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| {
                    let mut u = f64::from(x) / f64::from(w);
                    if mirror {
                        u = 1.0 - u;
                    }
                    let v = f64::from(y) / f64::from(h);
                    let l = 128.0
                        + 60.0 * (5.0 * u + 1.0).sin() * (3.0 * v).cos()
                        + 50.0 * (u * v * 9.0).sin();
                    let l = l.clamp(0.0, 255.0) as u8;
                    [l, l, l]
                })
            })
            .collect();
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        }
    }

    #[test]
    fn similar_images_hash_close_and_different_ones_far() {
        let a = phash(&pattern(256, 192, false));
        let b = phash(&pattern(200, 150, false));
        let c = phash(&pattern(256, 192, true));
        assert!(
            (a ^ b).count_ones() <= 4,
            "resized copy too far: {}",
            (a ^ b).count_ones()
        );
        assert!(
            (a ^ c).count_ones() >= 16,
            "mirror image too close: {}",
            (a ^ c).count_ones()
        );
    }

    #[test]
    fn average_of_a_flat_colour_is_that_colour() {
        let p = Pixels {
            width: 3,
            height: 3,
            channels: 3,
            data: [0x12, 0x34, 0x56].repeat(9),
        };
        assert_eq!(average_color(&p), "#123456");
        let transparent = Pixels {
            width: 1,
            height: 2,
            channels: 4,
            data: vec![255, 0, 0, 255, 0, 0, 255, 0],
        };
        assert_eq!(average_color(&transparent), "#ff0000");
    }
}
