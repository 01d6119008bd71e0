//! Bytes in, facts and renditions out: the pure heart of imagelake.
//!
//! The crate does no I/O and keeps no state, so it can be fuzzed, benchmarked and run on any
//! worker. It is split by the order of the work:
//!
//! 1. [`inspect`] sniffs the format from the bytes (never the client's header) and reads the
//!    headers alone: the dimensions, every frame a GIF declares, and how the pixels are stored.
//!    Pixel bombs are refused before a byte is decoded, and so is an image whose processing
//!    would need more memory than the whole decode budget; what it needs is an upper bound the
//!    workers reserve before they decode.
//! 2. [`process`] decodes once at the smallest size that still serves the largest rendition (JPEG
//!    shrink-on-load in the DCT domain, PNG and GIF shrunk row by row as they decode), converts to sRGB (ICC profiles, CMYK), applies the EXIF
//!    orientation, makes the renditions from that one decode (the thumb from the preview), and
//!    computes the perceptual hash and the average colour from the thumb.
//!
//! Renditions are encoded from pixels only, so no EXIF, GPS or other metadata of the original can
//! ever reach them.

#[doc(hidden)]
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;

mod color;
mod decode;
mod encode;
pub mod exif;
mod hash;
mod header;
mod orient;
mod pipeline;
mod resize;
mod shrink;
mod sniff;

pub use pipeline::{Options, Processed, Rendition, process};
pub use sniff::{Format, Inspection, inspect, sniff};

use imagelake_core::ErrorCode;

/// Why an image was refused or could not be processed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImagingError {
    #[error("{0}")]
    Unsupported(String),
    #[error("image is {width}x{height} ({pixels} pixels), over the limit of {limit} pixels")]
    PixelLimit {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("image could not be decoded: {0}")]
    Corrupt(String),
    #[error(
        "processing this image would need {needed} bytes of memory, more than the decode budget of {limit} bytes; send it smaller, or with fewer bits per pixel"
    )]
    DecodeLimit { needed: u64, limit: u64 },
    #[error(
        "the lossless WebP's Huffman tables need more than {limit} bytes of memory, the most a file of this size may use; send it as lossy WebP, PNG or JPEG"
    )]
    TableLimit { limit: u64 },
}

impl ImagingError {
    /// The client-facing code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unsupported(_) => ErrorCode::UnsupportedMediaType,
            Self::PixelLimit { .. } => ErrorCode::PixelLimitExceeded,
            Self::Corrupt(_) => ErrorCode::CorruptImage,
            Self::DecodeLimit { .. } | Self::TableLimit { .. } => ErrorCode::DecodeLimitExceeded,
        }
    }
}

/// Decoded pixels in sRGB, 8 bits per channel, 3 (RGB) or 4 (RGBA) channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl Pixels {
    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }
}
