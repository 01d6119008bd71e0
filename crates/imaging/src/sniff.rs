//! Format from the bytes, dimensions and memory from the headers: the checks the API makes
//! synchronously.

use std::io::Cursor;

use crate::{
    ImagingError, Options,
    header::{Frames, Header, Layout},
};

/// The formats imagelake decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Jpeg, Format::Png, Format::Webp, Format::Gif];

    /// The format a `Content-Type` names (parameters and case ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        Self::ALL
            .into_iter()
            .find(|f| f.content_type().eq_ignore_ascii_case(essence))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
        }
    }

    pub(crate) fn image_format(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::Webp => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
        }
    }
}

/// What the API learns before accepting an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspection {
    pub format: Format,
    /// Stored width (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// The most memory processing the image takes, its own bytes included.
    pub decode_bytes: u64,
}

/// Recognises a supported format from its magic bytes, or names the unsupported one.
pub fn sniff(bytes: &[u8]) -> Result<Format, ImagingError> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(Format::Webp);
    }
    let named = known_unsupported(bytes);
    Err(ImagingError::Unsupported(match named {
        Some(name) => format!("{name} images are not supported yet; send JPEG, PNG, WebP or GIF"),
        None => "the body is not a supported image (JPEG, PNG, WebP or GIF)".to_owned(),
    }))
}

/// Names image formats people commonly send that imagelake does not decode (yet).
fn known_unsupported(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brands: Vec<&[u8]> = bytes[8..bytes.len().min(64)].chunks(4).collect();
        if brands.iter().any(|b| *b == b"avif" || *b == b"avis") {
            return Some("AVIF");
        }
        if brands.iter().any(|b| {
            matches!(
                *b,
                b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1"
            )
        }) {
            return Some("HEIC");
        }
    }
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Some("TIFF");
    }
    if starts(b"BM") {
        return Some("BMP");
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL ") {
        return Some("JPEG XL");
    }
    None
}

/// Sniffs the format and reads the headers only, refusing images over `options.max_pixels`
/// (the canvas or any frame) and images whose processing would need more than
/// `options.max_decode_bytes`, before any pixel is decoded: memory stays bounded whatever the
/// headers claim.
pub fn inspect(bytes: &[u8], options: &Options) -> Result<Inspection, ImagingError> {
    let (header, decode_bytes) = checked_header(bytes, options)?;
    Ok(Inspection {
        format: header.format,
        width: header.width,
        height: header.height,
        decode_bytes,
    })
}

/// The headers, checked against the limits, and the memory processing will take.
pub(crate) fn checked_header(
    bytes: &[u8],
    options: &Options,
) -> Result<(Header, u64), ImagingError> {
    let format = sniff(bytes)?;
    // The declared size decides, even when the rest of the file is broken: a bomb needs no pixels.
    let header = match Header::read(bytes, format) {
        Some(header) => header,
        None => fallback_header(bytes, format)?,
    };
    header.check_pixels(options.max_pixels)?;
    let decode_bytes = header.decode_bytes(bytes.len(), crate::pipeline::DECODE_TARGET);
    if decode_bytes > options.max_decode_bytes {
        return Err(ImagingError::DecodeLimit {
            needed: decode_bytes,
            limit: options.max_decode_bytes,
        });
    }
    Ok((header, decode_bytes))
}

/// Headers this crate's reader does not follow but a decoder might: the size from the `image`
/// crate, and the most costly layout the format allows.
fn fallback_header(bytes: &[u8], format: Format) -> Result<Header, ImagingError> {
    let (width, height) =
        image::ImageReader::with_format(Cursor::new(bytes), format.image_format())
            .into_dimensions()
            .map_err(|e| {
                ImagingError::Corrupt(format!("unreadable {} header: {e}", format.name()))
            })?;
    let frames = Frames {
        largest: (width, height),
        widest: width,
    };
    let layout = match format {
        Format::Jpeg => Layout::Jpeg {
            precision: 16,
            buffered: true,
            lossless: true,
            components: vec![(1, 1); 4],
        },
        Format::Png => Layout::Png { bits_per_pixel: 64 },
        Format::Gif => Layout::Gif { frames },
        Format::Webp => Layout::Webp {
            animated: true,
            lossless: true,
            frames,
        },
    };
    Ok(Header {
        format,
        width,
        height,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_supported_formats_from_magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(), Format::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(), Format::Png);
        assert_eq!(sniff(b"GIF89a....").unwrap(), Format::Gif);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), Format::Webp);
    }

    #[test]
    fn names_heic_and_avif() {
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf";
        assert!(sniff(heic).unwrap_err().to_string().contains("HEIC"));
        assert!(sniff(avif).unwrap_err().to_string().contains("AVIF"));
        assert!(matches!(sniff(b"hello"), Err(ImagingError::Unsupported(_))));
        assert!(matches!(sniff(b""), Err(ImagingError::Unsupported(_))));
    }

    #[test]
    fn refuses_bombs_whose_header_is_all_there_is() {
        let sof = [0xFF, 0xC0, 0, 17, 8, 0xFD, 0xE8, 0xFD, 0xE8, 3];
        let jpeg = [&[0xFF, 0xD8][..], &sof, &[0xFF, 0xD9]].concat();
        assert!(matches!(
            inspect(&jpeg, &Options::default()),
            Err(ImagingError::PixelLimit { width: 65_000, .. })
        ));
        let mut webp = b"RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[0xFF, 0x3F, 0, 0xFF, 0x3F, 0]);
        assert!(matches!(
            inspect(&webp, &Options::default()),
            Err(ImagingError::PixelLimit { width: 16_384, .. })
        ));
    }

    #[test]
    fn refuses_frame_bombs_and_what_the_budget_cannot_hold() {
        let frames = crate::fixtures::gif_frame_bomb(20_000, 10_000);
        assert!(matches!(
            inspect(&frames, &Options::default()),
            Err(ImagingError::PixelLimit { width: 20_000, .. })
        ));
        let small = Options {
            max_decode_bytes: 8 << 20,
            ..Options::default()
        };
        let deep = crate::fixtures::deep_png_header(4_000, 3_000);
        assert!(matches!(
            inspect(&deep, &small),
            Err(ImagingError::DecodeLimit { limit, .. }) if limit == 8 << 20
        ));
        let fits = inspect(&deep, &Options::default()).unwrap();
        assert!(fits.decode_bytes > deep.len() as u64);
    }

    #[test]
    fn refuses_pixel_bombs_from_the_header() {
        let png = crate::fixtures::png_bomb(100_000, 100_000);
        let err = inspect(&png, &Options::default()).unwrap_err();
        assert!(
            matches!(err, ImagingError::PixelLimit { width: 100_000, .. }),
            "{err:?}"
        );
    }
}
