//! Shrinking while decoding, for formats without a scaled decoder (PNG, GIF, WebP).
//!
//! Rows are fed to a [`Canvas`] as the decoder produces them, and each is added into the output
//! pixel its `k` x `k` box falls in (a box filter, as libvips' shrink does before its Lanczos
//! reduce). So a 100 MP PNG never exists in memory at full size: the canvas holds the output,
//! whose longest side is between `target` and `2 x target`. Rows may come in any order and
//! leave gaps (interlaced PNG passes, interlaced GIF frames): each output pixel is divided by
//! what it actually received. Transparent pixels weigh by their alpha, so they do not darken
//! their neighbours.

use crate::Pixels;

/// The integer shrink factor that keeps the longest side at least `target`.
pub fn factor(width: u32, height: u32, target: u32) -> u32 {
    (width.max(height) / target.max(1)).max(1)
}

/// The size a `width` x `height` image is shrunk to for `target`.
pub fn output_size(width: u32, height: u32, target: u32) -> (u32, u32) {
    let k = factor(width, height, target);
    (width.div_ceil(k), height.div_ceil(k))
}

/// An RGBA output image, filled row by row.
pub struct Canvas {
    width: u32,
    height: u32,
    k: u32,
    out_width: usize,
    store: Store,
}

enum Store {
    /// Factor 1: the pixels themselves.
    Direct(Vec<u8>),
    /// Up to 15 x 15 source pixels an output pixel: their sums fit in 16 bits (9 bytes an
    /// output pixel).
    Small(Sums<u16, u8>),
    /// Larger boxes: 20 bytes an output pixel, for an output at most a 256th of the input.
    Large(Sums<u32, u32>),
}

/// The largest factor whose sums fit [`Store::Small`]: 15 x 15 x 255 < 65536.
pub const SMALL_FACTOR: u32 = 15;

/// Sums of alpha-weighted colour and of alpha, and how many source pixels each output pixel
/// received.
struct Sums<S, C> {
    sums: Vec<S>,
    counts: Vec<C>,
}

impl<S, C> Sums<S, C>
where
    S: Copy + Default + From<u8> + std::ops::AddAssign + Into<u32>,
    C: Copy + Default + From<u8> + std::ops::AddAssign + Into<u32>,
{
    fn new(pixels: usize) -> Self {
        Self {
            sums: vec![S::default(); pixels * 4],
            counts: vec![C::default(); pixels],
        }
    }

    fn add(&mut self, cell: usize, p: &[u8]) {
        let alpha = u32::from(p[3]);
        let at = cell * 4;
        for (sum, &value) in self.sums[at..at + 3].iter_mut().zip(&p[..3]) {
            // Weighted by alpha, rounded back to 8 bits so the sums stay small.
            *sum += S::from(((u32::from(value) * alpha + 127) / 255) as u8);
        }
        self.sums[at + 3] += S::from(p[3]);
        self.counts[cell] += C::from(1);
    }

    fn finish(&self) -> Vec<u8> {
        let mut data = vec![0u8; self.counts.len() * 4];
        for (cell, &count) in self.counts.iter().enumerate() {
            let count: u32 = count.into();
            let at = cell * 4;
            let alpha: u32 = self.sums[at + 3].into();
            if count == 0 || alpha == 0 {
                continue;
            }
            for c in 0..3 {
                let sum: u32 = self.sums[at + c].into();
                data[at + c] = ((u64::from(sum) * 255 + u64::from(alpha / 2)) / u64::from(alpha))
                    .min(255) as u8;
            }
            data[at + 3] = ((alpha + count / 2) / count) as u8;
        }
        data
    }
}

impl Canvas {
    /// A transparent canvas of `width` x `height` source pixels, shrunk for `target`.
    pub fn new(width: u32, height: u32, target: u32) -> Self {
        let k = factor(width, height, target);
        let (out_w, out_h) = output_size(width, height, target);
        let pixels = out_w as usize * out_h as usize;
        let store = match k {
            1 => Store::Direct(vec![0; pixels * 4]),
            2..=SMALL_FACTOR => Store::Small(Sums::new(pixels)),
            _ => Store::Large(Sums::new(pixels)),
        };
        Self {
            width,
            height,
            k,
            out_width: out_w as usize,
            store,
        }
    }

    /// Adds RGBA pixels of source row `y`: the `i`th lands at column `x0 + i * step`. Pixels
    /// outside the canvas are dropped.
    pub fn put_row(&mut self, y: u32, x0: u32, step: u32, rgba: &[u8]) {
        if y >= self.height {
            return;
        }
        let k = self.k;
        let out_row = (y / k) as usize * self.out_width;
        let columns = rgba
            .chunks_exact(4)
            .enumerate()
            .map(|(i, p)| (x0 as usize + i * step as usize, p))
            .take_while(|(x, _)| *x < self.width as usize);
        match &mut self.store {
            Store::Direct(data) => {
                for (x, p) in columns {
                    let at = (out_row + x) * 4;
                    data[at..at + 4].copy_from_slice(p);
                }
            }
            Store::Small(sums) => {
                for (x, p) in columns {
                    sums.add(out_row + x / k as usize, p);
                }
            }
            Store::Large(sums) => {
                for (x, p) in columns {
                    sums.add(out_row + x / k as usize, p);
                }
            }
        }
    }

    /// The shrunk RGBA pixels.
    pub fn finish(self) -> Pixels {
        let out_height = self.height.div_ceil(self.k);
        let data = match self.store {
            Store::Direct(data) => data,
            Store::Small(sums) => sums.finish(),
            Store::Large(sums) => sums.finish(),
        };
        Pixels {
            width: self.out_width as u32,
            height: out_height,
            channels: 4,
            data,
        }
    }
}

/// RGBA pixels as RGB when every pixel is opaque.
pub fn drop_opaque_alpha(pixels: Pixels) -> Pixels {
    if pixels.channels != 4 || !pixels.data.chunks_exact(4).all(|p| p[3] == 255) {
        return pixels;
    }
    let data = pixels
        .data
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Pixels {
        channels: 3,
        data,
        ..pixels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_keep_the_longest_side_above_the_target() {
        assert_eq!(factor(1000, 800, 1024), 1);
        assert_eq!(factor(2047, 100, 1024), 1);
        assert_eq!(factor(2048, 100, 1024), 2);
        assert_eq!(output_size(10_000, 7_500, 1024), (1112, 834));
        assert_eq!(output_size(100_000, 3, 1024), (1031, 1));
    }

    #[test]
    fn boxes_average_and_weigh_by_alpha() {
        let mut canvas = Canvas::new(4, 2, 2);
        // Left box: two red and two blue pixels; right box: opaque white beside transparent black.
        canvas.put_row(
            0,
            0,
            1,
            &[
                255, 0, 0, 255, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0,
            ],
        );
        canvas.put_row(
            1,
            0,
            1,
            &[
                255, 0, 0, 255, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0,
            ],
        );
        let out = canvas.finish();
        assert_eq!((out.width, out.height), (2, 1));
        assert_eq!(&out.data[..4], &[128, 0, 128, 255]);
        assert_eq!(
            &out.data[4..],
            &[255, 255, 255, 128],
            "white, half covered, not grey"
        );
    }

    #[test]
    fn large_boxes_average_too() {
        let mut canvas = Canvas::new(40, 20, 1);
        for y in 0..20 {
            canvas.put_row(y, 0, 1, &[200, 100, 50, 255].repeat(40));
        }
        let out = canvas.finish();
        assert_eq!((out.width, out.height), (1, 1));
        assert_eq!(out.data, vec![200, 100, 50, 255]);
    }

    #[test]
    fn sparse_rows_count_only_what_came() {
        let mut canvas = Canvas::new(4, 4, 2);
        // Only odd rows, as from the last pass of an interlaced file.
        canvas.put_row(1, 0, 1, &[10, 20, 30, 255].repeat(4));
        canvas.put_row(3, 0, 1, &[50, 60, 70, 255].repeat(4));
        let out = canvas.finish();
        assert_eq!(&out.data[..4], &[10, 20, 30, 255]);
        assert_eq!(&out.data[8..12], &[50, 60, 70, 255]);
    }

    #[test]
    fn a_strided_row_lands_in_its_columns_and_the_rest_is_dropped() {
        let mut canvas = Canvas::new(3, 1, 1024);
        canvas.put_row(0, 1, 2, &[1, 2, 3, 4, 5, 6, 7, 8]);
        canvas.put_row(7, 0, 1, &[9, 9, 9, 9]);
        let out = canvas.finish();
        assert_eq!(out.data, vec![0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]);
    }
}
