//! Rendition encoding. Opaque images become JPEG q80 with 4:2:0 chroma (what browsers and CDNs
//! expect), by libjpeg-turbo with the `turbojpeg` feature and by `jpeg-encoder` without; images
//! with real transparency become PNG so the alpha channel survives. Nothing but pixels is
//! written: no EXIF, no GPS, no comments.

use image::{ImageEncoder, codecs::png};

use crate::{ImagingError, Pixels};

pub const JPEG_QUALITY: u8 = 80;

/// Encodes pixels; returns the bytes and their content type.
pub fn encode(pixels: &Pixels) -> Result<(Vec<u8>, &'static str), ImagingError> {
    let fail = |e: &dyn std::fmt::Display| ImagingError::Corrupt(format!("encoding failed: {e}"));
    if pixels.has_alpha() {
        let mut out = Vec::with_capacity(pixels.data.len() / 4);
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
    let (Ok(w), Ok(h)) = (u16::try_from(pixels.width), u16::try_from(pixels.height)) else {
        return Err(fail(&"rendition too large for JPEG"));
    };
    let bytes = encode_jpeg(&pixels.data, w, h).map_err(|e| fail(&e))?;
    Ok((bytes, "image/jpeg"))
}

#[cfg(feature = "turbojpeg")]
fn encode_jpeg(rgb: &[u8], w: u16, h: u16) -> Result<Vec<u8>, turbojpeg::Error> {
    let mut compressor = turbojpeg::Compressor::new()?;
    compressor.set_quality(i32::from(JPEG_QUALITY))?;
    compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2)?;
    let image = turbojpeg::Image {
        pixels: rgb,
        width: usize::from(w),
        pitch: usize::from(w) * 3,
        height: usize::from(h),
        format: turbojpeg::PixelFormat::RGB,
    };
    compressor.compress_to_vec(image)
}

#[cfg(not(feature = "turbojpeg"))]
fn encode_jpeg(rgb: &[u8], w: u16, h: u16) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    encode_jpeg_portable(rgb, w, h)
}

/// Pure Rust (`jpeg-encoder`): the build without libjpeg-turbo. Compiled into every test build,
/// so one build tests both encoders.
#[cfg(any(test, not(feature = "turbojpeg")))]
fn encode_jpeg_portable(
    rgb: &[u8],
    w: u16,
    h: u16,
) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = Encoder::new(&mut out, JPEG_QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    encoder.encode(rgb, w, h, ColorType::Rgb)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both JPEG encoders, in the one build: each writes a JPEG of the size asked, with no
    /// metadata, that decodes to the colours it was given.
    #[test]
    fn both_jpeg_encoders_write_plain_jpegs_of_the_colours_given() {
        let (w, h) = (320u16, 200u16);
        let rgb: Vec<u8> = (0..usize::from(w) * usize::from(h))
            .flat_map(|_| [200u8, 40, 90])
            .collect();
        let encoded = [
            encode_jpeg(&rgb, w, h).unwrap(),
            encode_jpeg_portable(&rgb, w, h).unwrap(),
        ];
        for bytes in encoded {
            assert!(
                !crate::fixtures::has_metadata(&bytes),
                "no EXIF, XMP or ICC"
            );
            let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(&bytes));
            let pixels = decoder.decode().unwrap();
            let info = decoder.info().unwrap();
            assert_eq!((info.width, info.height), (w, h));
            let mean = |c: usize| {
                pixels
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&v| u64::from(v))
                    .sum::<u64>()
                    / (u64::from(w) * u64::from(h))
            };
            for (c, want) in [200u64, 40, 90].into_iter().enumerate() {
                assert!(
                    mean(c).abs_diff(want) <= 3,
                    "channel {c}: {} for {want}",
                    mean(c)
                );
            }
        }
    }
}
