//! The whole processing step for one image: one decode feeding every rendition and fact.

use fast_image_resize::Resizer;
use imagelake_core::{paths::RenditionKind, records::ExifFacts};

use crate::{Format, ImagingError, decode, encode, exif, hash, orient, resize, sniff};

/// The longest side images are decoded at (at least): the preview's.
pub(crate) const DECODE_TARGET: u32 = RenditionKind::Preview.max_side();

/// What processing is allowed to do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Images with more pixels (canvas or any frame) are refused before decoding.
    pub max_pixels: u64,
    /// Images whose processing needs more memory than this are refused before decoding.
    pub max_decode_bytes: u64,
    /// Keep the GPS position in the EXIF facts (never in renditions).
    pub keep_gps: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_decode_bytes: 512 << 20,
            keep_gps: false,
        }
    }
}

impl Options {
    /// No limits: for tools that read trusted files.
    pub fn unlimited() -> Self {
        Self {
            max_pixels: u64::MAX,
            max_decode_bytes: u64::MAX,
            keep_gps: false,
        }
    }
}

/// One encoded rendition.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub kind: RenditionKind,
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Everything learnt from one image.
#[derive(Debug, Clone)]
pub struct Processed {
    pub format: Format,
    /// As displayed, after the EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub exif: Option<ExifFacts>,
    pub phash: u64,
    pub average_color: String,
    pub renditions: Vec<Rendition>,
}

impl Processed {
    /// The perceptual hash as 16 hex digits.
    pub fn phash_hex(&self) -> String {
        format!("{:016x}", self.phash)
    }
}

/// Validates, decodes and turns an original into renditions and facts.
pub fn process(bytes: &[u8], options: &Options) -> Result<Processed, ImagingError> {
    let (header, _) = sniff::checked_header(bytes, options)?;
    let format = header.format;
    let mut exif = exif::read(bytes);
    let orientation = exif.as_ref().and_then(|e| e.orientation).unwrap_or(1);
    if let Some(e) = exif.as_mut().filter(|_| !options.keep_gps) {
        e.gps = None;
    }
    let decoded = decode::decode(bytes, &header, DECODE_TARGET, options.max_pixels)?;
    let mut resizer = Resizer::new();
    let preview = resize::to_fit(
        &decoded.pixels,
        RenditionKind::Preview.max_side(),
        &mut resizer,
    )?;
    drop(decoded.pixels);
    let preview = orient::apply(preview, orientation);
    let thumb = resize::to_fit(&preview, RenditionKind::Thumb.max_side(), &mut resizer)?;
    let (width, height) = if orient::swaps_axes(orientation) {
        (decoded.height, decoded.width)
    } else {
        (decoded.width, decoded.height)
    };
    let phash = hash::phash(&thumb);
    let average_color = hash::average_color(&thumb);
    let mut renditions = Vec::with_capacity(2);
    for (kind, pixels) in [
        (RenditionKind::Thumb, &thumb),
        (RenditionKind::Preview, &preview),
    ] {
        let (bytes, content_type) = encode::encode(pixels)?;
        renditions.push(Rendition {
            kind,
            width: pixels.width,
            height: pixels.height,
            content_type,
            bytes,
        });
    }
    Ok(Processed {
        format,
        width,
        height,
        exif,
        phash,
        average_color,
        renditions,
    })
}
