//! Decoding to sRGB pixels at the smallest size that still serves the largest rendition.
//!
//! JPEG shrinks on load: the IDCT is scaled so a 20 MP photo made into a 1024 px preview is
//! decoded at a fraction of its pixels. With the `turbojpeg` feature, libjpeg-turbo does it (SIMD,
//! any M/8 scale); without it, the pure-Rust `jpeg-decoder` does (1/2, 1/4, 1/8). Both refuse
//! truncated files instead of returning half an image.
//!
//! PNG and GIF are decoded row by row, 16-bit samples stripped to 8, and shrunk while decoding
//! (see `shrink`), so their memory follows the output size, not the input's: a 100 MP 16-bit
//! PNG never takes its 800 MB. WebP has no row-by-row decoder; its frame is decoded whole and
//! then shrunk, and `Header::decode_bytes` counts it so. Every decoder also gets an allocation
//! cap.

use std::io::Cursor;

use crate::{
    Format, ImagingError, Pixels, color,
    header::{Header, METADATA, check_pixels, webp_tables},
    shrink::{self, Canvas},
};

/// Decoded pixels plus the stored (pre-orientation) size of the original.
pub struct Decoded {
    pub pixels: Pixels,
    pub width: u32,
    pub height: u32,
}

/// Decodes `bytes` so that its longest side is at least `target` (or full size when smaller).
pub fn decode(
    bytes: &[u8],
    header: &Header,
    target: u32,
    max_pixels: u64,
) -> Result<Decoded, ImagingError> {
    match header.format {
        Format::Jpeg => decode_jpeg(bytes, target, max_pixels),
        Format::Png => decode_png(bytes, header.width, target),
        Format::Gif => decode_gif(bytes, target),
        Format::Webp => decode_webp(bytes, target),
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
    // Each progressive scan is a pass over the whole image: thousands of tiny scans are a CPU
    // bomb in a small file. Real encoders write about ten.
    decompressor.set_scan_limit(MAX_SCANS).map_err(corrupt)?;
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

/// Progressive scans allowed in one JPEG.
#[cfg(feature = "turbojpeg")]
const MAX_SCANS: u32 = 500;

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

/// PNG, one row at a time: palette and low bit depths expanded, 16-bit samples stripped to 8,
/// each row shrunk into the canvas as it comes. Interlaced files give their seven passes in turn,
/// each row placed at its Adam7 position.
fn decode_png(bytes: &[u8], width: u32, target: u32) -> Result<Decoded, ImagingError> {
    use png::Transformations;

    // The decoder's own allocations are its rows (counted by `Header::decode_bytes`) and
    // metadata, capped here; text chunks are not kept at all.
    let limits = png::Limits {
        bytes: METADATA.saturating_add((width as usize).saturating_mul(16)),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_ignore_text_chunk(true);
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let info = reader.info();
    let (width, height, interlaced) = (info.width, info.height, info.interlaced);
    let icc = info.icc_profile.as_ref().map(|p| p.to_vec());
    let (color, _) = reader.output_color_type();
    if color == png::ColorType::Indexed {
        return Err(corrupt("the PNG palette was not expanded"));
    }
    let samples = color.samples();
    let mut canvas = Canvas::new(width, height, target);
    let mut positions = RowPositions::new(width, height, interlaced);
    let mut rgba = Vec::with_capacity(width as usize * 4);
    while let Some(row) = reader.next_row().map_err(corrupt)? {
        let (y, x0, step) = positions
            .next()
            .ok_or_else(|| corrupt("more PNG rows than the header declares"))?;
        to_rgba(row.data(), samples, &mut rgba);
        canvas.put_row(y, x0, step, &rgba);
    }
    Ok(Decoded {
        pixels: to_srgb(canvas.finish(), icc.as_deref()),
        width,
        height,
    })
}

/// Where each row a PNG decoder gives lands: `(y, first column, column step)`.
struct RowPositions {
    rows: Box<dyn Iterator<Item = (u32, u32, u32)>>,
}

impl RowPositions {
    /// Adam7 passes as `(x0, y0, dx, dy)`.
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];

    fn new(width: u32, height: u32, interlaced: bool) -> Self {
        if !interlaced {
            return Self {
                rows: Box::new((0..height).map(|y| (y, 0, 1))),
            };
        }
        // A pass with no column or no row in this image is skipped, as decoders do.
        let rows = Self::PASSES
            .into_iter()
            .filter(move |&(x0, y0, _, _)| x0 < width && y0 < height)
            .flat_map(move |(x0, y0, dx, dy)| {
                (0..(height - y0).div_ceil(dy)).map(move |line| (y0 + line * dy, x0, dx))
            });
        Self {
            rows: Box::new(rows),
        }
    }

    fn next(&mut self) -> Option<(u32, u32, u32)> {
        self.rows.next()
    }
}

/// One row of 8-bit samples, `samples` a pixel (grey, grey+alpha, RGB or RGBA), as RGBA.
fn to_rgba(row: &[u8], samples: usize, out: &mut Vec<u8>) {
    out.clear();
    match samples {
        1 => out.extend(row.iter().flat_map(|&g| [g, g, g, 255])),
        2 => out.extend(row.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]])),
        3 => out.extend(row.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255])),
        _ => out.extend_from_slice(row),
    }
}

/// GIF: the first frame, row by row, drawn on the logical screen (what lies outside it is not
/// shown) and shrunk as it comes. The frame's size was checked against the pixel limit from the
/// headers; its rows are never held at once.
fn decode_gif(bytes: &[u8], target: u32) -> Result<Decoded, ImagingError> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    // Rows are read into this function's buffer; the decoder's own allocations are extension
    // data (an ICC profile), capped here.
    if let Some(cap) = std::num::NonZeroU64::new(METADATA as u64) {
        options.set_memory_limit(gif::MemoryLimit::Bytes(cap));
    }
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(corrupt)?;
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    check_pixels(width, height, u64::MAX)?;
    let frame = decoder
        .next_frame_info()
        .map_err(corrupt)?
        .ok_or_else(|| corrupt("the GIF has no image"))?;
    let (left, top) = (u32::from(frame.left), u32::from(frame.top));
    let (frame_width, frame_height) = (u32::from(frame.width), u32::from(frame.height));
    let interlaced = frame.interlaced;
    let mut canvas = Canvas::new(width, height, target);
    let mut row = vec![0u8; frame_width as usize * 4];
    for n in 0..frame_height {
        if !row.is_empty() && !decoder.fill_buffer(&mut row).map_err(corrupt)? {
            return Err(corrupt("the GIF's image data ends early"));
        }
        let y = if interlaced {
            interlaced_gif_row(n, frame_height)
        } else {
            n
        };
        canvas.put_row(top + y, left, 1, &row);
    }
    let icc = decoder.icc_profile().map(<[u8]>::to_vec);
    Ok(Decoded {
        pixels: to_srgb(canvas.finish(), icc.as_deref()),
        width,
        height,
    })
}

/// The image row the `n`th stored row of an interlaced GIF frame of `height` rows is: every 8th
/// row from 0, then every 8th from 4, every 4th from 2, every 2nd from 1.
fn interlaced_gif_row(n: u32, height: u32) -> u32 {
    let mut n = n;
    for (start, step) in [(0, 8), (4, 8), (2, 4), (1, 2)] {
        let rows = if height > start {
            (height - start).div_ceil(step)
        } else {
            0
        };
        if n < rows {
            return start + n * step;
        }
        n -= rows;
    }
    height
}

/// WebP: the first frame decoded whole (image-webp has no row-by-row decoder), then shrunk.
fn decode_webp(bytes: &[u8], target: u32) -> Result<Decoded, ImagingError> {
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    // The cap covers metadata chunks; the frame is what `Header::decode_bytes` counts.
    decoder.set_memory_limit(METADATA);
    let tables = webp_tables(bytes.len());
    decoder.set_huffman_memory_limit(usize::try_from(tables).unwrap_or(usize::MAX));
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, u64::MAX)?;
    let channels: u8 = if decoder.has_alpha() { 4 } else { 3 };
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| corrupt("the WebP image is too large"))?;
    let mut data = vec![0u8; size];
    decoder.read_image(&mut data).map_err(|e| match e {
        image_webp::DecodingError::MemoryLimitExceeded => {
            ImagingError::TableLimit { limit: tables }
        }
        other => corrupt(other),
    })?;
    let icc = decoder.icc_profile().ok().flatten();
    let whole = Pixels {
        width,
        height,
        channels,
        data,
    };
    let pixels = if shrink::factor(width, height, target) == 1 {
        whole
    } else {
        let mut canvas = Canvas::new(width, height, target);
        let mut rgba = Vec::with_capacity(width as usize * 4);
        let row_len = width as usize * usize::from(channels);
        for (y, row) in whole.data.chunks_exact(row_len).enumerate() {
            to_rgba(row, usize::from(channels), &mut rgba);
            canvas.put_row(y as u32, 0, 1, &rgba);
        }
        canvas.finish()
    };
    Ok(Decoded {
        pixels: to_srgb(pixels, icc.as_deref()),
        width,
        height,
    })
}

/// Decoded RGB or RGBA pixels in sRGB, without an alpha channel that is opaque everywhere.
fn to_srgb(pixels: Pixels, icc: Option<&[u8]>) -> Pixels {
    let mut pixels = shrink::drop_opaque_alpha(pixels);
    if pixels.has_alpha() {
        color::rgba_to_srgb(&mut pixels.data, icc);
        pixels
    } else {
        let (width, height) = (pixels.width, pixels.height);
        rgb_pixels(width, height, color::to_srgb(pixels.data, 3, icc))
    }
}

fn rgb_pixels(width: u32, height: u32, data: Vec<u8>) -> Pixels {
    Pixels {
        width,
        height,
        channels: 3,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn mean(p: &Pixels, c: usize) -> u64 {
        let n = u64::from(p.width) * u64::from(p.height);
        p.data
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| u64::from(v))
            .sum::<u64>()
            / n
    }

    /// Both JPEG decoders, in the one build: the pure-Rust one (the build without libjpeg-turbo,
    /// and CMYK files in any build) and the one this build uses read the same baseline and
    /// progressive files to the same size and colours, shrinking on load without going below
    /// the target.
    #[test]
    fn both_jpeg_decoders_agree() {
        for bytes in [
            fixtures::jpeg(1600, 1200),
            fixtures::progressive_jpeg(1200, 1600),
        ] {
            for target in [150, 512, 4000] {
                let portable = decode_jpeg_portable(&bytes, target, 50_000_000).unwrap();
                let used = decode_jpeg(&bytes, target, 50_000_000).unwrap();
                for decoded in [&portable, &used] {
                    let p = &decoded.pixels;
                    assert_eq!(decoded.width * decoded.height, 1600 * 1200);
                    assert!(
                        p.width.max(p.height) >= target.min(1600),
                        "{}x{}",
                        p.width,
                        p.height
                    );
                    assert_eq!(p.data.len(), (p.width * p.height * 3) as usize);
                }
                for c in 0..3 {
                    let (a, b) = (mean(&portable.pixels, c), mean(&used.pixels, c));
                    assert!(a.abs_diff(b) <= 4, "channel {c}: {a} and {b}");
                }
            }
        }
    }

    #[test]
    fn the_portable_decoder_refuses_what_the_other_refuses() {
        let bytes = fixtures::jpeg(800, 600);
        let truncated = &bytes[..bytes.len() / 2];
        assert!(decode_jpeg_portable(truncated, 256, 50_000_000).is_err());
        assert!(decode_jpeg(truncated, 256, 50_000_000).is_err());
        assert!(matches!(
            decode_jpeg_portable(&bytes, 256, 1000),
            Err(ImagingError::PixelLimit { .. })
        ));
    }
}
