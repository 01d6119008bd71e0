//! Resizing with `fast_image_resize` (SIMD convolution, Lanczos3; alpha premultiplied).

use fast_image_resize::{PixelType, Resizer, images::Image};

use crate::{ImagingError, Pixels};

/// The size that fits `width` x `height` inside a `max_side` square, keeping the aspect ratio.
/// Images already small enough keep their size: renditions never upscale.
pub fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest))
            .max(1) as u32
    };
    (scale(width), scale(height))
}

/// Resizes to fit in `max_side`; returns a copy when no resizing is needed.
pub fn to_fit(src: &Pixels, max_side: u32, resizer: &mut Resizer) -> Result<Pixels, ImagingError> {
    let (w, h) = fit(src.width, src.height, max_side);
    if (w, h) == (src.width, src.height) {
        return Ok(src.clone());
    }
    let pixel_type = if src.has_alpha() {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    let fail = |e: &dyn std::fmt::Display| ImagingError::Corrupt(format!("resize failed: {e}"));
    let source =
        fast_image_resize::images::ImageRef::new(src.width, src.height, &src.data, pixel_type)
            .map_err(|e| fail(&e))?;
    let mut dst = Image::new(w, h, pixel_type);
    resizer
        .resize(&source, &mut dst, None)
        .map_err(|e| fail(&e))?;
    Ok(Pixels {
        width: w,
        height: h,
        channels: src.channels,
        data: dst.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_without_upscaling() {
        assert_eq!(fit(4000, 3000, 1024), (1024, 768));
        assert_eq!(fit(3000, 4000, 256), (192, 256));
        assert_eq!(fit(100, 50, 256), (100, 50));
        assert_eq!(fit(10_000, 1, 256), (256, 1));
    }

    #[test]
    fn resizes_pixels() {
        let src = Pixels {
            width: 8,
            height: 4,
            channels: 3,
            data: vec![200; 8 * 4 * 3],
        };
        let out = to_fit(&src, 4, &mut Resizer::new()).unwrap();
        assert_eq!((out.width, out.height, out.data.len()), (4, 2, 4 * 2 * 3));
        assert!(out.data.iter().all(|&v| (199..=201).contains(&v)));
    }
}
