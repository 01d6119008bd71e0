//! Decoding to sRGB pixels at the smallest size that still serves the largest rendition.
//!
//! JPEG shrinks on load: the IDCT is scaled so a 20 MP photo made into a 1024 px preview is
//! decoded at a fraction of its pixels. With the `turbojpeg` feature, libjpeg-turbo does it (SIMD,
//! any M/8 scale); without it, the pure-Rust `jpeg-decoder` does (1/2, 1/4, 1/8). Both refuse
//! truncated files instead of returning half an image. The other formats go through the `image`
//! crate with allocation limits.

use std::io::Cursor;

use crate::{Format, ImagingError, Pixels, color, sniff::check_pixels};

/// Decoded pixels plus the stored (pre-orientation) size of the original.
pub struct Decoded {
    pub pixels: Pixels,
    pub width: u32,
    pub height: u32,
}

/// Decodes `bytes` so that its longest side is at least `target` (or full size when smaller).
pub fn decode(
    bytes: &[u8],
    format: Format,
    target: u32,
    max_pixels: u64,
) -> Result<Decoded, ImagingError> {
    match format {
        Format::Jpeg => decode_jpeg(bytes, target, max_pixels),
        _ => decode_other(bytes, format, max_pixels),
    }
}

fn corrupt(e: impl std::fmt::Display) -> ImagingError {
    ImagingError::Corrupt(e.to_string())
}

/// With libjpeg-turbo: SIMD IDCT and colour conversion, and the finest scale (any M/8) whose
/// output still covers `target`. CMYK/YCCK files take the portable path, which handles Adobe's
/// inverted inks.
#[cfg(feature = "turbojpeg")]
fn decode_jpeg(bytes: &[u8], target: u32, max_pixels: u64) -> Result<Decoded, ImagingError> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

    let header = turbojpeg::read_header(bytes).map_err(corrupt)?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return decode_jpeg_portable(bytes, target, max_pixels);
    }
    let (width, height) = (
        u32::try_from(header.width).map_err(corrupt)?,
        u32::try_from(header.height).map_err(corrupt)?,
    );
    check_pixels(width, height, max_pixels)?;
    let longest = header.width.max(header.height);
    let factor = Decompressor::supported_scaling_factors()
        .into_iter()
        .filter(|f| f.num() <= f.denom() && f.scale(longest) >= target as usize)
        .min_by_key(|f| f.scale(longest))
        .unwrap_or(ScalingFactor::ONE);
    let mut decompressor = Decompressor::new().map_err(corrupt)?;
    decompressor.set_scaling_factor(factor).map_err(corrupt)?;
    let scaled = header.scaled(factor);
    let mut image = Image {
        pixels: vec![0u8; scaled.width * scaled.height * 3],
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: PixelFormat::RGB,
    };
    decompressor
        .decompress(bytes, image.as_deref_mut())
        .map_err(corrupt)?;
    let data = color::to_srgb(image.pixels, 3, jpeg_icc_profile(bytes).as_deref());
    Ok(Decoded {
        pixels: Pixels {
            width: scaled.width as u32,
            height: scaled.height as u32,
            channels: 3,
            data,
        },
        width,
        height,
    })
}

/// The embedded ICC profile, read from the headers only.
#[cfg(feature = "turbojpeg")]
fn jpeg_icc_profile(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().ok()?;
    decoder.icc_profile()
}

#[cfg(not(feature = "turbojpeg"))]
fn decode_jpeg(bytes: &[u8], target: u32, max_pixels: u64) -> Result<Decoded, ImagingError> {
    decode_jpeg_portable(bytes, target, max_pixels)
}

/// Pure Rust: `jpeg-decoder` with IDCT scaling by 1/2, 1/4 or 1/8.
fn decode_jpeg_portable(
    bytes: &[u8],
    target: u32,
    max_pixels: u64,
) -> Result<Decoded, ImagingError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| corrupt("missing JPEG frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, max_pixels)?;
    let longest = width.max(height);
    if longest > target {
        let scaled = |side: u32| {
            (u64::from(side) * u64::from(target))
                .div_ceil(u64::from(longest))
                .max(1) as u16
        };
        decoder
            .scale(scaled(width), scaled(height))
            .map_err(corrupt)?;
    }
    decoder.set_max_decoding_buffer_size(
        usize::try_from(max_pixels.saturating_mul(4)).unwrap_or(usize::MAX),
    );
    let data = decoder.decode().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| corrupt("missing JPEG frame header"))?;
    let channels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::CMYK32 => 4,
        jpeg_decoder::PixelFormat::L16 => {
            return Err(ImagingError::Unsupported(
                "12/16-bit JPEG is not supported".to_owned(),
            ));
        }
    };
    let icc = decoder.icc_profile();
    let data = color::to_srgb(data, channels, icc.as_deref());
    Ok(Decoded {
        pixels: Pixels {
            width: u32::from(info.width),
            height: u32::from(info.height),
            channels: 3,
            data,
        },
        width,
        height,
    })
}

fn decode_other(bytes: &[u8], format: Format, max_pixels: u64) -> Result<Decoded, ImagingError> {
    use image::ImageDecoder;

    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    let icc = decoder.icc_profile().ok().flatten();
    let image = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    let pixels = if image.color().has_alpha() {
        let mut rgba = image.into_rgba8().into_raw();
        if rgba.chunks_exact(4).all(|p| p[3] == 255) {
            let rgb = rgba
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            rgb_pixels(width, height, color::to_srgb(rgb, 3, icc.as_deref()))
        } else {
            color::rgba_to_srgb(&mut rgba, icc.as_deref());
            Pixels {
                width,
                height,
                channels: 4,
                data: rgba,
            }
        }
    } else {
        let rgb = image.into_rgb8().into_raw();
        rgb_pixels(width, height, color::to_srgb(rgb, 3, icc.as_deref()))
    };
    Ok(Decoded {
        pixels,
        width,
        height,
    })
}

fn rgb_pixels(width: u32, height: u32, data: Vec<u8>) -> Pixels {
    Pixels {
        width,
        height,
        channels: 3,
        data,
    }
}
