//! Rendition encoding. Opaque images become JPEG q80 with 4:2:0 chroma (what browsers and CDNs
//! expect, and the smallest of the fast encoders); images with real transparency become PNG so
//! the alpha channel survives. Nothing but pixels is written: no EXIF, no GPS, no comments.

use image::{ImageEncoder, codecs::png};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::{ImagingError, Pixels};

pub const JPEG_QUALITY: u8 = 80;

/// Encodes pixels; returns the bytes and their content type.
pub fn encode(pixels: &Pixels) -> Result<(Vec<u8>, &'static str), ImagingError> {
    let fail = |e: &dyn std::fmt::Display| ImagingError::Corrupt(format!("encoding failed: {e}"));
    let mut out = Vec::with_capacity(pixels.data.len() / 8);
    if pixels.has_alpha() {
        png::PngEncoder::new_with_quality(
            &mut out,
            png::CompressionType::Fast,
            png::FilterType::Adaptive,
        )
        .write_image(
            &pixels.data,
            pixels.width,
            pixels.height,
            image::ExtendedColorType::Rgba8,
        )
        .map_err(|e| fail(&e))?;
        return Ok((out, "image/png"));
    }
    let (w, h) = (u16::try_from(pixels.width), u16::try_from(pixels.height));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(fail(&"rendition too large for JPEG"));
    };
    let mut encoder = Encoder::new(&mut out, JPEG_QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    encoder
        .encode(&pixels.data, w, h, ColorType::Rgb)
        .map_err(|e| fail(&e))?;
    Ok((out, "image/jpeg"))
}
