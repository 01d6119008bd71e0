//! What a file's headers say, read without decoding a pixel: its size, how its pixels are laid
//! out, every frame it declares, and from that the most memory processing it can take.
//!
//! The pixel limit is checked against the largest thing a decoder will allocate, not only the
//! declared canvas: a GIF with a 1x1 screen can declare a 10000x10000 frame, and a 16-bit RGBA
//! PNG holds eight bytes a pixel where a JPEG holds three. [`Header::decode_bytes`] is an upper
//! bound on what [`crate::process`] allocates for the image, including the original's bytes;
//! the workers reserve that much of their shared decode budget before they start.

use crate::{Format, ImagingError, shrink};

/// What the headers declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    /// Stored width and height (before EXIF orientation); for GIF the logical screen.
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
}

/// How the pixels are stored, as far as memory goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Jpeg {
        precision: u8,
        /// The decoder keeps every DCT coefficient of the image: a progressive file, or a
        /// sequential one whose first scan carries fewer components than the frame.
        buffered: bool,
        lossless: bool,
        /// Horizontal and vertical sampling factors of each component.
        components: Vec<(u8, u8)>,
    },
    Png {
        /// Bits a pixel takes in a row as stored (samples x bit depth).
        bits_per_pixel: u32,
    },
    Gif {
        frames: Frames,
    },
    Webp {
        animated: bool,
        /// Lossless data may be inside (a `VP8L` or `ALPH` chunk, or animation frames): its
        /// Huffman tables take their allowance (`webp_tables`).
        lossless: bool,
        /// The bitstreams' own sizes, which a decoder allocates before it compares them with
        /// the canvas.
        frames: Frames,
    },
}

/// The frames a file declares, as far as memory goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frames {
    /// Width and height of the frame with the most pixels.
    pub largest: (u32, u32),
    /// The widest frame's width.
    pub widest: u32,
}

impl Frames {
    fn add(&mut self, width: u32, height: u32) {
        let area = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
        if area((width, height)) > area(self.largest) {
            self.largest = (width, height);
        }
        self.widest = self.widest.max(width);
    }
}

/// Allocations not proportional to the image: the two renditions, the resizer's buffers, the
/// encoders, the EXIF reader, the decoders' tables, and twice [`METADATA`] (an ICC profile as
/// the decoder holds it and as it is copied out).
const FIXED: u64 = (24 << 20) + 2 * METADATA as u64;

/// What a decoder may allocate for metadata (ICC profiles, text chunks): decoders are given
/// this cap, whatever the image.
pub const METADATA: usize = 16 << 20;

impl Header {
    /// Reads the headers of `bytes`, already sniffed as `format`; `None` when they are
    /// incomplete or malformed.
    pub fn read(bytes: &[u8], format: Format) -> Option<Self> {
        let (width, height, layout) = match format {
            Format::Jpeg => jpeg(bytes)?,
            Format::Png => png(bytes)?,
            Format::Gif => gif(bytes)?,
            Format::Webp => webp(bytes)?,
        };
        Some(Self {
            format,
            width,
            height,
            layout,
        })
    }

    /// Refuses images whose canvas or any frame has more than `max_pixels`, or none.
    pub fn check_pixels(&self, max_pixels: u64) -> Result<(), ImagingError> {
        check_pixels(self.width, self.height, max_pixels)?;
        if let Layout::Gif { frames } | Layout::Webp { frames, .. } = &self.layout {
            let (w, h) = frames.largest;
            // An empty frame draws nothing; a large one is refused like a large canvas.
            if u64::from(w) * u64::from(h) > max_pixels {
                check_pixels(w, h, max_pixels)?;
            }
        }
        Ok(())
    }

    /// The most memory processing this image takes, in bytes: its `original_len` bytes, the
    /// decoder's buffers, the pixels at the size they are decoded to, and the renditions.
    pub fn decode_bytes(&self, original_len: usize, target: u32) -> u64 {
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        let decoder = match &self.layout {
            Layout::Jpeg {
                precision,
                buffered,
                lossless,
                components,
            } => jpeg_bytes(w, h, *precision, *buffered, *lossless, components, target),
            Layout::Png { bits_per_pixel } => {
                let row = (w * u64::from(*bits_per_pixel)).div_ceil(8) + 1;
                // The decoder's rows as stored: the current and previous ones, and the inflate
                // and unfiltering buffers, which grow by doubling and are copied when they do
                // (measured at up to 11 rows for very wide images; a few hundred KB for usual
                // ones); then the row expanded to 8-bit RGBA, then the shrinking canvas.
                16 * row + 8 * w + (1 << 20) + self.canvas_bytes(target)
            }
            Layout::Gif { frames } => {
                // One RGBA row of the frame and the decoder's tables, then the canvas.
                8 * u64::from(frames.widest) + (1 << 20) + self.canvas_bytes(target)
            }
            Layout::Webp {
                animated,
                lossless,
                frames,
            } => {
                // image-webp decodes the whole frame at its bitstream's size: RGBA output, YUV
                // planes, the alpha plane and a copy while they are merged for lossy with alpha
                // (measured: 9.8 bytes a pixel), a second RGBA buffer for lossless without
                // alpha; an animation composites on a canvas besides. Then the shrinking canvas.
                let (fw, fh) = frames.largest;
                let largest = (w * h).max(u64::from(fw) * u64::from(fh));
                let per_pixel = if *animated { 20 } else { 12 };
                let tables = if *lossless {
                    webp_tables(original_len)
                } else {
                    0
                };
                per_pixel * largest + tables + self.canvas_bytes(target)
            }
        };
        original_len as u64 + decoder + FIXED
    }

    /// The shrinking canvas, the pixels it yields, and their sRGB copies.
    fn canvas_bytes(&self, target: u32) -> u64 {
        let (out_w, out_h) = shrink::output_size(self.width, self.height, target);
        let pixels = u64::from(out_w) * u64::from(out_h);
        // The RGBA pixels at once, or sums and a count a pixel while shrinking (see `shrink`);
        // then RGBA, RGB and colour-converted copies, and the resizer's source.
        let canvas = match shrink::factor(self.width, self.height, target) {
            1 => 4,
            2..=shrink::SMALL_FACTOR => 9,
            _ => 20,
        };
        pixels * (canvas + 4 + 3 + 4 + 4)
    }
}

/// The most memory the Huffman tables of a lossless WebP stream (or lossless alpha plane) may take: 8 MiB, and 64 bytes
/// for each byte of the file, at most 128 MiB. The decoder (image-webp, patched: see
/// `vendor/image-webp`) stops there. Their number comes from an entropy image inside the
/// bitstream, up to 65536 groups of five trees, so only a cap can bound them: a crafted file of a
/// few hundred KiB would otherwise ask for gigabytes, while real encoders' files use a small
/// part of this.
pub(crate) fn webp_tables(original_len: usize) -> u64 {
    ((8 << 20) + 64 * original_len as u64).min(128 << 20)
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

/// JPEG: the decoded planes at the scale the decoder picks, the colour-converted copy, and
/// where the decoder buffers them the whole image's DCT coefficients (two bytes each, at full
/// size whatever the output scale: every scan adds to them).
fn jpeg_bytes(
    w: u64,
    h: u64,
    precision: u8,
    buffered: bool,
    lossless: bool,
    components: &[(u8, u8)],
    target: u32,
) -> u64 {
    let longest = w.max(h);
    // The coarsest power-of-two scale whose output still covers `target`: libjpeg-turbo's M/8
    // scale is never larger, and lossless files are not scaled at all.
    let divisor = if lossless {
        1
    } else {
        [8, 4, 2]
            .into_iter()
            .find(|d| longest.div_ceil(*d) >= u64::from(target))
            .unwrap_or(1)
    };
    let out = w.div_ceil(divisor) * h.div_ceil(divisor);
    let sample = if precision > 8 { 2 } else { 1 };
    let count = components.len().max(1) as u64;
    let planes = out * count * sample;
    let (hmax, vmax) = components.iter().fold((1u64, 1u64), |(a, b), &(hs, vs)| {
        (a.max(u64::from(hs)), b.max(u64::from(vs)))
    });
    let coefficients: u64 = if buffered {
        components
            .iter()
            .map(|&(hs, vs)| {
                let (hs, vs) = (u64::from(hs.max(1)), u64::from(vs.max(1)));
                let cols = (w * hs).div_ceil(hmax).div_ceil(8).next_multiple_of(hs);
                let rows = (h * vs).div_ceil(vmax).div_ceil(8).next_multiple_of(vs);
                cols * rows * 64 * 2
            })
            .sum()
    } else {
        // One row of MCUs at a time, a few copies.
        w.next_multiple_of(8 * hmax) * 8 * vmax * count * 2 * 4
    };
    let (out_w, out_h) = (w.div_ceil(divisor), h.div_ceil(divisor));
    let converted = out_w * out_h * (3 + 3 + 4);
    coefficients + planes + converted
}

fn be16(bytes: &[u8], i: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        bytes.get(i..i + 2)?.try_into().ok()?,
    )))
}

fn le16(bytes: &[u8], i: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        bytes.get(i..i + 2)?.try_into().ok()?,
    )))
}

fn be32(bytes: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
}

fn le24(bytes: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *bytes.get(i)?,
        *bytes.get(i + 1)?,
        *bytes.get(i + 2)?,
        0,
    ]))
}

/// Walks the marker segments to the first start-of-frame, then on to the first scan.
fn jpeg(bytes: &[u8]) -> Option<(u32, u32, Layout)> {
    let (mut i, (width, height, mut layout)) = jpeg_frame(bytes)?;
    // libjpeg buffers the whole image's coefficients for a sequential file too when its first
    // scan does not carry every component. A file that ends before its first scan is counted
    // as if it did.
    let first_scan = jpeg_first_scan(bytes, &mut i);
    if let Layout::Jpeg {
        buffered,
        components,
        ..
    } = &mut layout
    {
        *buffered |= first_scan.is_none_or(|n| n < components.len());
    }
    Some((width, height, layout))
}

/// The next marker from `*i` on, leaving `*i` on its segment (after the marker bytes).
fn next_marker(bytes: &[u8], i: &mut usize) -> Option<u8> {
    while *bytes.get(*i)? != 0xFF {
        *i += 1;
    }
    while *bytes.get(*i)? == 0xFF {
        *i += 1;
    }
    let marker = *bytes.get(*i)?;
    *i += 1;
    Some(marker)
}

/// How many components the first scan (start of scan, `FFDA`) from `*i` on carries.
fn jpeg_first_scan(bytes: &[u8], i: &mut usize) -> Option<usize> {
    loop {
        let marker = next_marker(bytes, i)?;
        if matches!(marker, 0xD0..=0xD9 | 0x01) {
            continue;
        }
        if marker == 0xDA {
            return bytes.get(*i + 2).map(|&n| usize::from(n));
        }
        *i += usize::try_from(be16(bytes, *i)?).ok()?;
    }
}

/// The first start-of-frame, and the position after its segment.
fn jpeg_frame(bytes: &[u8]) -> Option<(usize, (u32, u32, Layout))> {
    let mut i = 2;
    loop {
        let marker = next_marker(bytes, &mut i)?;
        if matches!(marker, 0xD0..=0xD9 | 0x01) {
            continue;
        }
        let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            let precision = *bytes.get(i + 2)?;
            let (height, width) = (be16(bytes, i + 3)?, be16(bytes, i + 5)?);
            // A frame header cut short still declares its size: the pixel limit needs no more.
            let count = bytes.get(i + 7).map_or(3, |&n| usize::from(n));
            let components = (0..count)
                .map(|c| {
                    bytes
                        .get(i + 8 + 3 * c + 1)
                        .map_or((1, 1), |&f| (f >> 4, f & 0x0F))
                })
                .collect();
            let layout = Layout::Jpeg {
                precision,
                buffered: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                lossless: matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF),
                components,
            };
            let after = i + be16(bytes, i).map_or(0, |n| n as usize);
            return Some((after, (width, height, layout)));
        }
        i += usize::try_from(be16(bytes, i)?).ok()?;
    }
}

fn png(bytes: &[u8]) -> Option<(u32, u32, Layout)> {
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let (width, height) = (be32(bytes, 16)?, be32(bytes, 20)?);
    let depth = u32::from(*bytes.get(24)?);
    let samples = match *bytes.get(25)? {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        6 => 4,
        _ => return None,
    };
    Some((
        width,
        height,
        Layout::Png {
            bits_per_pixel: samples * depth,
        },
    ))
}

/// The logical screen and every image descriptor: the blocks are walked without decoding, their
/// data sub-blocks skipped by their lengths.
fn gif(bytes: &[u8]) -> Option<(u32, u32, Layout)> {
    let (width, height) = (le16(bytes, 6)?, le16(bytes, 8)?);
    let flags = *bytes.get(10)?;
    let mut i = 13 + color_table_len(flags);
    let mut frames = Frames::default();
    loop {
        match bytes.get(i) {
            Some(0x21) => i = skip_sub_blocks(bytes, i + 2),
            Some(0x2C) => {
                frames.add(le16(bytes, i + 5)?, le16(bytes, i + 7)?);
                let flags = *bytes.get(i + 9)?;
                // Descriptor, local colour table, LZW code size, then the data sub-blocks.
                i = skip_sub_blocks(bytes, i + 10 + color_table_len(flags) + 1);
            }
            // The trailer, or a file cut short: what was seen is what a decoder can reach.
            _ => break,
        }
        if i >= bytes.len() {
            break;
        }
    }
    Some((width, height, Layout::Gif { frames }))
}

fn color_table_len(flags: u8) -> usize {
    if flags & 0x80 == 0 {
        0
    } else {
        3 << ((flags & 0x07) + 1)
    }
}

/// The position after a chain of data sub-blocks starting at `i` (or past the end).
fn skip_sub_blocks(bytes: &[u8], mut i: usize) -> usize {
    while let Some(&len) = bytes.get(i) {
        i += 1;
        if len == 0 {
            return i;
        }
        i += usize::from(len);
    }
    usize::MAX
}

/// The canvas (from `VP8X`, or the one bitstream of a simple file) and the size every bitstream
/// declares: a still image's `VP8 `/`VP8L` chunk and each animation frame's.
fn webp(bytes: &[u8]) -> Option<(u32, u32, Layout)> {
    let mut frames = Frames::default();
    let (width, height, animated) = match bytes.get(12..16)? {
        b"VP8X" => {
            let flags = *bytes.get(20)?;
            let canvas = (le24(bytes, 24)? + 1, le24(bytes, 27)? + 1);
            webp_bitstreams(bytes, 12, &mut frames, false);
            (canvas.0, canvas.1, flags & 0x02 != 0)
        }
        _ => {
            let (w, h) = webp_bitstream(bytes, 12)?;
            frames.add(w, h);
            (w, h, false)
        }
    };
    // Where the chunks are not followed exactly, any mention counts: the allowance is only ever
    // added where it might not be needed, never left out.
    let lossless = animated || find(bytes, b"VP8L") || find(bytes, b"ALPH");
    Some((
        width,
        height,
        Layout::Webp {
            animated,
            lossless,
            frames,
        },
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The size a `VP8 ` or `VP8L` chunk at `i` declares.
fn webp_bitstream(bytes: &[u8], i: usize) -> Option<(u32, u32)> {
    match bytes.get(i..i + 4)? {
        b"VP8L" => {
            let bits = u32::from_le_bytes(bytes.get(i + 9..i + 13)?.try_into().ok()?);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8 " => Some((le16(bytes, i + 14)? & 0x3FFF, le16(bytes, i + 16)? & 0x3FFF)),
        _ => None,
    }
}

/// Adds the size of every bitstream in the chunks from `i` on, inside animation frames too
/// (one level: frames do not nest).
fn webp_bitstreams(bytes: &[u8], mut i: usize, frames: &mut Frames, in_frame: bool) {
    while let Some(len) = bytes
        .get(i + 4..i + 8)
        .and_then(|b| b.try_into().ok())
        .map(|b| u32::from_le_bytes(b) as usize)
    {
        match bytes.get(i..i + 4) {
            Some(b"ANMF") if !in_frame => {
                if let (Some(w), Some(h)) = (le24(bytes, i + 14), le24(bytes, i + 17)) {
                    frames.add(w + 1, h + 1);
                }
                // The frame's own chunks follow its 16-byte header.
                let end = (i + 8).saturating_add(len).min(bytes.len());
                webp_bitstreams(&bytes[..end], i + 24, frames, true);
            }
            Some(b"VP8 " | b"VP8L") => {
                if let Some((w, h)) = webp_bitstream(bytes, i) {
                    frames.add(w, h);
                }
            }
            _ => {}
        }
        i = (i + 8).saturating_add(len).saturating_add(len % 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn read(bytes: &[u8], format: Format) -> Option<(u32, u32)> {
        Header::read(bytes, format).map(|h| (h.width, h.height))
    }

    #[test]
    fn reads_declared_sizes_without_a_decoder() {
        assert_eq!(
            read(&fixtures::jpeg(300, 200), Format::Jpeg),
            Some((300, 200))
        );
        assert_eq!(read(&fixtures::png(31, 17), Format::Png), Some((31, 17)));
        assert_eq!(read(&fixtures::gif(40, 30), Format::Gif), Some((40, 30)));
        assert_eq!(
            read(&fixtures::webp(123, 45), Format::Webp),
            Some((123, 45))
        );
        assert_eq!(read(b"\xFF\xD8\xFF", Format::Jpeg), None);
    }

    #[test]
    fn sees_every_gif_frame() {
        let bomb = fixtures::gif_frame_bomb(10_000, 10_000);
        let header = Header::read(&bomb, Format::Gif).unwrap();
        assert_eq!((header.width, header.height), (1, 1));
        assert_eq!(
            header.layout,
            Layout::Gif {
                frames: Frames {
                    largest: (10_000, 10_000),
                    widest: 10_000
                }
            }
        );
        assert!(matches!(
            header.check_pixels(50_000_000),
            Err(ImagingError::PixelLimit { width: 10_000, .. })
        ));
        let plain = Header::read(&fixtures::gif(40, 30), Format::Gif).unwrap();
        assert_eq!(
            plain.layout,
            Layout::Gif {
                frames: Frames {
                    largest: (40, 30),
                    widest: 40
                }
            }
        );
    }

    #[test]
    fn deep_pixels_cost_more_than_shallow_ones() {
        let deep = fixtures::deep_png_header(10_000, 10_000);
        let header = Header::read(&deep, Format::Png).unwrap();
        assert_eq!(header.layout, Layout::Png { bits_per_pixel: 64 });
        // Shrunk while decoding: far below the 800 MB the raw pixels would take.
        assert!(header.decode_bytes(deep.len(), 1024) < 100 << 20);
        let jpeg = Header::read(&fixtures::jpeg(4000, 3000), Format::Jpeg).unwrap();
        assert!(matches!(
            jpeg.layout,
            Layout::Jpeg {
                buffered: false,
                ..
            }
        ));
        assert!(jpeg.decode_bytes(0, 1024) < 100 << 20);
    }

    #[test]
    fn a_webp_bitstream_larger_than_its_canvas_counts() {
        let bomb = fixtures::webp_frame_bomb(16_000, 16_000);
        let header = Header::read(&bomb, Format::Webp).unwrap();
        assert_eq!((header.width, header.height), (1, 1));
        assert!(matches!(
            header.check_pixels(100_000_000),
            Err(ImagingError::PixelLimit { width: 16_000, .. })
        ));
        let plain = Header::read(&fixtures::webp(123, 45), Format::Webp).unwrap();
        let Layout::Webp { frames, .. } = plain.layout else {
            panic!("{:?}", plain.layout)
        };
        assert_eq!(frames.largest, (123, 45));
    }

    #[test]
    fn buffered_jpegs_count_their_coefficients() {
        let progressive = Header::read(&fixtures::progressive_jpeg(64, 48), Format::Jpeg).unwrap();
        assert!(matches!(
            progressive.layout,
            Layout::Jpeg { buffered: true, .. }
        ));
        let layout = |buffered| Header {
            format: Format::Jpeg,
            width: 10_000,
            height: 10_000,
            layout: Layout::Jpeg {
                precision: 8,
                buffered,
                lossless: false,
                components: vec![(1, 1); 3],
            },
        };
        let buffered = layout(true).decode_bytes(0, 1024);
        assert!(buffered > 600_000_000, "{buffered}");
        assert!(layout(false).decode_bytes(0, 1024) < 100_000_000);
    }
}
