//! Format from the bytes, dimensions from the header: the checks the API makes synchronously.

use std::io::Cursor;

use crate::ImagingError;

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

/// Sniffs the format and reads the dimensions from the header only, refusing images over
/// `max_pixels` before any pixel is decoded (memory stays bounded whatever the header claims).
pub fn inspect(bytes: &[u8], max_pixels: u64) -> Result<Inspection, ImagingError> {
    let format = sniff(bytes)?;
    // The declared size decides, even when the rest of the file is broken: a bomb needs no pixels.
    let (width, height) = match declared_size(bytes, format) {
        Some(size) => size,
        None => image::ImageReader::with_format(Cursor::new(bytes), format.image_format())
            .into_dimensions()
            .map_err(|e| {
                ImagingError::Corrupt(format!("unreadable {} header: {e}", format.name()))
            })?,
    };
    check_pixels(width, height, max_pixels)?;
    Ok(Inspection {
        format,
        width,
        height,
    })
}

/// The width and height a file declares in its first header, read without a decoder.
fn declared_size(bytes: &[u8], format: Format) -> Option<(u32, u32)> {
    let be16 = |i: usize| {
        Some(u32::from(u16::from_be_bytes(
            bytes.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let le16 = |i: usize| {
        Some(u32::from(u16::from_le_bytes(
            bytes.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let be32 = |i: usize| Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    let le24 = |i: usize| {
        Some(u32::from_le_bytes([
            *bytes.get(i)?,
            *bytes.get(i + 1)?,
            *bytes.get(i + 2)?,
            0,
        ]))
    };
    match format {
        Format::Png => (bytes.get(12..16)? == b"IHDR").then(|| Some((be32(16)?, be32(20)?)))?,
        Format::Gif => Some((le16(6)?, le16(8)?)),
        Format::Webp => match bytes.get(12..16)? {
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
            }
            b"VP8 " => Some((le16(26)? & 0x3FFF, le16(28)? & 0x3FFF)),
            _ => None,
        },
        Format::Jpeg => {
            // Walk the marker segments to the first start-of-frame.
            let mut i = 2;
            loop {
                while *bytes.get(i)? != 0xFF {
                    i += 1;
                }
                while *bytes.get(i)? == 0xFF {
                    i += 1;
                }
                let marker = *bytes.get(i)?;
                i += 1;
                if matches!(marker, 0xD0..=0xD9 | 0x01) {
                    continue;
                }
                let is_frame =
                    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if is_frame {
                    return Some((be16(i + 5)?, be16(i + 3)?));
                }
                i += usize::try_from(be16(i)?).ok()?;
            }
        }
    }
}

pub(crate) fn check_pixels(width: u32, height: u32, limit: u64) -> Result<(), ImagingError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limit {
        return Err(ImagingError::PixelLimit {
            width,
            height,
            pixels,
            limit,
        });
    }
    if pixels == 0 {
        return Err(ImagingError::Corrupt("image has no pixels".to_owned()));
    }
    Ok(())
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
    fn reads_declared_sizes_without_a_decoder() {
        use crate::fixtures;
        assert_eq!(
            declared_size(&fixtures::jpeg(300, 200), Format::Jpeg),
            Some((300, 200))
        );
        assert_eq!(
            declared_size(&fixtures::png(31, 17), Format::Png),
            Some((31, 17))
        );
        assert_eq!(
            declared_size(&fixtures::gif(40, 30), Format::Gif),
            Some((40, 30))
        );
        assert_eq!(
            declared_size(&fixtures::webp(123, 45), Format::Webp),
            Some((123, 45))
        );
        assert_eq!(declared_size(b"\xFF\xD8\xFF", Format::Jpeg), None);
    }

    #[test]
    fn refuses_bombs_whose_header_is_all_there_is() {
        let sof = [0xFF, 0xC0, 0, 17, 8, 0xFD, 0xE8, 0xFD, 0xE8, 3];
        let jpeg = [&[0xFF, 0xD8][..], &sof, &[0xFF, 0xD9]].concat();
        assert!(matches!(
            inspect(&jpeg, 100_000_000),
            Err(ImagingError::PixelLimit { width: 65_000, .. })
        ));
        let mut webp = b"RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[0xFF, 0x3F, 0, 0xFF, 0x3F, 0]);
        assert!(matches!(
            inspect(&webp, 100_000_000),
            Err(ImagingError::PixelLimit { width: 16_384, .. })
        ));
    }

    #[test]
    fn refuses_pixel_bombs_from_the_header() {
        let png = crate::fixtures::png_bomb(100_000, 100_000);
        let err = inspect(&png, 100_000_000).unwrap_err();
        assert!(
            matches!(err, ImagingError::PixelLimit { width: 100_000, .. }),
            "{err:?}"
        );
    }
}
