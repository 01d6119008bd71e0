//! Small synthetic images for tests: made in code, so the repository carries no third-party
//! pictures. Each one has a red top-left quadrant on grey, so a test can tell how it was turned.

use std::io::Cursor;

use exif::{Field, In, Rational, Tag, Value, experimental::Writer};
use image::{ImageEncoder, RgbImage, RgbaImage};

/// Red top-left quadrant, a grey ramp elsewhere, with a little texture.
pub fn quadrant_rgb(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let noise = ((x * 7 + y * 13) % 16) as u8;
        let grey = (40 + 150 * x / width.max(1) + 40 * y / height.max(1)) as u8;
        if x < width / 2 && y < height / 2 {
            image::Rgb([220, 20 + noise, 20])
        } else {
            image::Rgb([grey, grey, grey.saturating_add(noise)])
        }
    })
}

pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = quadrant_rgb(width, height);
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder
        .encode(
            img.as_raw(),
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encode jpeg");
    out
}

/// The quadrant image as a progressive JPEG (whose decoders keep every DCT coefficient).
pub fn progressive_jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = quadrant_rgb(width, height);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.set_progressive(true);
    encoder
        .encode(
            img.as_raw(),
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encode progressive jpeg");
    out
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    encode(
        quadrant_rgb(width, height).as_raw(),
        width,
        height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
}

/// A PNG whose right half is fully transparent.
pub fn png_with_alpha(width: u32, height: u32) -> Vec<u8> {
    let rgb = quadrant_rgb(width, height);
    let rgba = RgbaImage::from_fn(width, height, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], if x < width / 2 { 255 } else { 0 }])
    });
    encode(
        rgba.as_raw(),
        width,
        height,
        image::ExtendedColorType::Rgba8,
        image::ImageFormat::Png,
    )
}

pub fn gif(width: u32, height: u32) -> Vec<u8> {
    opaque_rgba(width, height, image::ImageFormat::Gif)
}

pub fn webp(width: u32, height: u32) -> Vec<u8> {
    opaque_rgba(width, height, image::ImageFormat::WebP)
}

/// The quadrant image with an opaque alpha channel (what the GIF and WebP encoders take).
fn opaque_rgba(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let rgba = image::DynamicImage::ImageRgb8(quadrant_rgb(width, height)).into_rgba8();
    encode(
        rgba.as_raw(),
        width,
        height,
        image::ExtendedColorType::Rgba8,
        format,
    )
}

fn encode(
    raw: &[u8],
    width: u32,
    height: u32,
    color: image::ExtendedColorType,
    format: image::ImageFormat,
) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match format {
        image::ImageFormat::Png => {
            image::codecs::png::PngEncoder::new(&mut out).write_image(raw, width, height, color)
        }
        image::ImageFormat::Gif => {
            image::codecs::gif::GifEncoder::new(&mut out).encode(raw, width, height, color)
        }
        _ => image::codecs::webp::WebPEncoder::new_lossless(&mut out)
            .write_image(raw, width, height, color),
    }
    .expect("encode fixture");
    out.into_inner()
}

/// A PNG header claiming `width` x `height` pixels, with an empty image data chunk.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[8, 2, 0, 0, 0],
    ]
    .concat();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[]);
    png
}

/// The headers of a 16-bit RGBA PNG (eight bytes a pixel) and an empty image: what the memory
/// estimate reads.
pub fn deep_png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[16, 6, 0, 0, 0],
    ]
    .concat();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[]);
    png
}

/// A real 16-bit RGBA PNG of `width` x `height`, written row by row (so a large one costs the
/// test little memory): a red top-left quadrant on a grey ramp, fully opaque.
pub fn deep_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().expect("png header");
    let mut stream = writer.stream_writer().expect("png stream");
    for y in 0..height {
        let row: Vec<u8> = (0..width)
            .flat_map(|x| {
                let grey = (40 + 150 * x / width.max(1)) as u16 * 257;
                let [r, g, b] = if x < width / 2 && y < height / 2 {
                    [220 * 257, 20 * 257, 20 * 257]
                } else {
                    [grey, grey, grey]
                };
                [r, g, b, u16::MAX].into_iter().flat_map(u16::to_be_bytes)
            })
            .collect();
        std::io::Write::write_all(&mut stream, &row).expect("png row");
    }
    stream.finish().expect("png end");
    drop(writer);
    out
}

/// The quadrant image as an Adam7-interlaced 8-bit RGB PNG (the encoders at hand write none,
/// so its passes are laid out here, in stored deflate blocks).
pub fn interlaced_png(width: u32, height: u32) -> Vec<u8> {
    let img = quadrant_rgb(width, height);
    let passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in passes {
        if x0 >= width || y0 >= height {
            continue;
        }
        for y in (y0..height).step_by(dy) {
            raw.push(0);
            for x in (x0..width).step_by(dx) {
                raw.extend_from_slice(&img.get_pixel(x, y).0);
            }
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[8, 2, 0, 0, 1],
    ]
    .concat();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &stored_zlib(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

/// `data` as a zlib stream of uncompressed blocks.
fn stored_zlib(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A WebP whose `VP8X` canvas is 1x1 but whose lossy bitstream declares `width` x `height`: a
/// decoder allocates the bitstream's size before it compares it with the canvas.
pub fn webp_frame_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut vp8 = vec![0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A];
    vp8.extend_from_slice(&width.to_le_bytes());
    vp8.extend_from_slice(&height.to_le_bytes());
    vp8.extend_from_slice(&[0; 10]);
    webp_file(&[(b"VP8X", &[0; 10]), (b"VP8 ", &vp8)])
}

/// A WebP file of these chunks (each padded to an even length).
fn webp_file(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (fourcc, data) in chunks {
        body.extend_from_slice(*fourcc);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut riff = b"RIFF".to_vec();
    riff.extend_from_slice(&(body.len() as u32).to_le_bytes());
    riff.extend_from_slice(&body);
    riff
}

/// Bits written least significant first, as VP8L reads them.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    used: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u32) {
        for i in 0..bits {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            *self.bytes.last_mut().expect("a byte") |= bit << (self.used % 8);
            self.used += 1;
        }
    }

    /// A one-symbol ("simple") prefix code.
    fn single_symbol(&mut self, symbol: u8) {
        self.put(1, 1); // simple
        self.put(0, 1); // one symbol
        self.put(1, 1); // of 8 bits
        self.put(u32::from(symbol), 8);
    }
}

/// A 4x4 lossless WebP whose bitstream asks for `groups` Huffman groups (at most 65536), each
/// with a green code of 2048 eleven-bit symbols: about 68 KiB of tables from 11 bytes of input
/// per group. The groups' number comes from its one-pixel entropy image, so no header says it.
/// The bitstream ends after the codes.
pub fn webp_huffman_bomb(groups: u32) -> Vec<u8> {
    let groups = groups.clamp(1, 65536);
    let code = groups - 1;
    let mut w = BitWriter::default();
    w.put(0x2f, 8); // VP8L signature
    w.put(3, 14); // width - 1
    w.put(3, 14); // height - 1
    w.put(0, 1); // no alpha
    w.put(0, 3); // version
    w.put(0, 1); // no transform
    w.put(1, 1); // a colour cache
    w.put(11, 4); // of 2^11 entries: green's alphabet is 280 + 2048 symbols
    w.put(1, 1); // meta prefix codes
    w.put(0, 3); // in blocks of 4x4 pixels: a 1x1 entropy image
    // The entropy image: no cache, five one-symbol codes, one pixel naming group `code`.
    w.put(0, 1);
    w.single_symbol((code & 0xff) as u8); // green: the group's low byte
    w.single_symbol((code >> 8) as u8); // red: its high byte
    for _ in 0..3 {
        w.single_symbol(0); // blue, alpha, distance
    }
    for _ in 0..groups {
        // Green: a normal code whose code-length code has the one symbol 11, so every length
        // read costs no bits; 2048 symbols of length 11 make a complete code.
        w.put(0, 1);
        w.put(15 - 4, 4); // code-length code lengths for the first 15 in their order
        for order in [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11] {
            w.put(u32::from(order == 11), 3);
        }
        w.put(1, 1); // the number of symbols is given:
        w.put(5, 3); // in 2 + 2 * 5 = 12 bits,
        w.put(2048 - 2, 12); // 2048
        for _ in 0..4 {
            w.single_symbol(0); // red, blue, alpha, distance
        }
    }
    webp_file(&[(b"VP8L", &w.bytes)])
}

/// A GIF whose logical screen is 1x1 but whose one frame declares `width` x `height`, with a
/// few bytes of image data: the frame, not the screen, is what a decoder allocates.
pub fn gif_frame_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0]);
    gif.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    gif.push(0x2C);
    gif.extend_from_slice(&[0, 0, 0, 0]);
    gif.extend_from_slice(&width.to_le_bytes());
    gif.extend_from_slice(&height.to_le_bytes());
    gif.push(0);
    gif.extend_from_slice(&[2, 2, 0x4C, 0x01, 0, 0x3B]);
    gif
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc_input = [&kind[..], data].concat();
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// EXIF tags to write into a JPEG copy.
#[derive(Debug, Clone, Default)]
pub struct ExifSpec {
    pub orientation: Option<u16>,
    pub make: Option<&'static str>,
    pub model: Option<&'static str>,
    /// `YYYY:MM:DD HH:MM:SS`, as cameras write it.
    pub taken_at: Option<&'static str>,
    pub offset: Option<&'static str>,
    /// Degrees; negative is south or west.
    pub gps: Option<(f64, f64)>,
}

fn ascii(tag: Tag, ifd: In, s: &str) -> Field {
    Field {
        tag,
        ifd_num: ifd,
        value: Value::Ascii(vec![s.as_bytes().to_vec()]),
    }
}

fn dms(degrees: f64) -> Value {
    let d = degrees.abs();
    let whole = d.trunc();
    let minutes = ((d - whole) * 60.0).trunc();
    let seconds = ((d - whole) * 60.0 - minutes) * 60.0;
    Value::Rational(vec![
        Rational {
            num: whole as u32,
            denom: 1,
        },
        Rational {
            num: minutes as u32,
            denom: 1,
        },
        Rational {
            num: (seconds * 10_000.0).round() as u32,
            denom: 10_000,
        },
    ])
}

/// Returns a copy of `jpeg` with an EXIF (APP1) segment right after the start marker.
pub fn with_exif(jpeg: &[u8], spec: &ExifSpec) -> Vec<u8> {
    let mut fields = Vec::new();
    if let Some(o) = spec.orientation {
        fields.push(Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![o]),
        });
    }
    if let Some(m) = spec.make {
        fields.push(ascii(Tag::Make, In::PRIMARY, m));
    }
    if let Some(m) = spec.model {
        fields.push(ascii(Tag::Model, In::PRIMARY, m));
    }
    if let Some(t) = spec.taken_at {
        fields.push(ascii(Tag::DateTimeOriginal, In::PRIMARY, t));
    }
    if let Some(o) = spec.offset {
        fields.push(ascii(Tag::OffsetTimeOriginal, In::PRIMARY, o));
    }
    if let Some((lat, lon)) = spec.gps {
        fields.push(ascii(
            Tag::GPSLatitudeRef,
            In::PRIMARY,
            if lat < 0.0 { "S" } else { "N" },
        ));
        fields.push(Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: dms(lat),
        });
        fields.push(ascii(
            Tag::GPSLongitudeRef,
            In::PRIMARY,
            if lon < 0.0 { "W" } else { "E" },
        ));
        fields.push(Field {
            tag: Tag::GPSLongitude,
            ifd_num: In::PRIMARY,
            value: dms(lon),
        });
    }
    let mut writer = Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).expect("write exif");
    let payload = [&b"Exif\0\0"[..], tiff.get_ref()].concat();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Whether encoded bytes carry any EXIF or XMP metadata.
pub fn has_metadata(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w == b"Exif\0\0")
        || bytes.windows(4).any(|w| w == b"eXIf")
        || bytes.windows(9).any(|w| w == b"http://ns")
}

/// A CMYK JPEG (Adobe, as Photoshop writes them) with the red quadrant in ink values.
pub fn cmyk_jpeg(width: u32, height: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                if x < width / 2 && y < height / 2 {
                    [0, 255, 255, 0]
                } else {
                    [0, 0, 0, 128]
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(
            &data,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Cmyk,
        )
        .expect("encode cmyk");
    out
}

/// A flat JPEG of `rgb` tagged with the Display P3 ICC profile.
pub fn display_p3_jpeg(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let data = rgb.repeat((width * height) as usize);
    let icc = moxcms::ColorProfile::new_display_p3()
        .encode()
        .expect("encode icc");
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
    encoder.add_icc_profile(&icc).expect("icc fits");
    encoder
        .encode(
            &data,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encode p3");
    out
}
