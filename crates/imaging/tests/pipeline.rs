//! The processing step on synthetic images of every supported format and EXIF case.

use imagelake_imaging::{
    ImagingError, Options, Processed,
    fixtures::{self, ExifSpec},
    process,
};

fn run(bytes: &[u8]) -> Processed {
    process(bytes, &Options::default()).expect("processes")
}

fn decode(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("rendition decodes")
        .into_rgba8()
}

fn is_red(p: &image::Rgba<u8>) -> bool {
    p[0] > 150 && p[1] < 90 && p[2] < 90
}

#[test]
fn every_format_gives_two_renditions_without_upscaling() {
    for (name, bytes) in [
        ("jpeg", fixtures::jpeg(1600, 1200)),
        ("png", fixtures::png(1600, 1200)),
        ("gif", fixtures::gif(400, 300)),
        ("webp", fixtures::webp(1600, 1200)),
    ] {
        let p = run(&bytes);
        assert_eq!(p.format.name(), name);
        let [thumb, preview] = [&p.renditions[0], &p.renditions[1]];
        let expected_preview = if name == "gif" {
            (400, 300)
        } else {
            (1024, 768)
        };
        assert_eq!((preview.width, preview.height), expected_preview, "{name}");
        assert_eq!((thumb.width, thumb.height), (256, 192), "{name}");
        assert_eq!(decode(&thumb.bytes).dimensions(), (256, 192));
        assert!(
            is_red(decode(&preview.bytes).get_pixel(10, 10)),
            "{name}: colours survive"
        );
        assert_eq!(p.phash_hex().len(), 16);
        assert!(p.average_color.starts_with('#') && p.average_color.len() == 7);
    }
}

#[test]
fn every_orientation_is_applied() {
    // Where the red quadrant ends up for each orientation (as displayed).
    let expected = [
        (1, "tl"),
        (2, "tr"),
        (3, "br"),
        (4, "bl"),
        (5, "tl"),
        (6, "tr"),
        (7, "br"),
        (8, "bl"),
    ];
    let plain = fixtures::jpeg(400, 200);
    for (orientation, corner) in expected {
        let bytes = fixtures::with_exif(
            &plain,
            &ExifSpec {
                orientation: Some(orientation),
                ..Default::default()
            },
        );
        let p = run(&bytes);
        let swapped = orientation >= 5;
        assert_eq!(
            (p.width, p.height),
            if swapped { (200, 400) } else { (400, 200) },
            "orientation {orientation}"
        );
        let preview = decode(&p.renditions[1].bytes);
        let (w, h) = preview.dimensions();
        let (x, y) = match corner {
            "tl" => (5, 5),
            "tr" => (w - 6, 5),
            "br" => (w - 6, h - 6),
            _ => (5, h - 6),
        };
        assert!(
            is_red(preview.get_pixel(x, y)),
            "orientation {orientation}: red should be {corner}"
        );
        assert_eq!(
            p.exif.as_ref().and_then(|e| e.orientation),
            Some(orientation)
        );
    }
}

#[test]
fn exif_facts_are_read_and_gps_kept_only_when_allowed() {
    let spec = ExifSpec {
        make: Some("Canon"),
        model: Some("EOS 5D"),
        taken_at: Some("2024:06:01 14:30:05"),
        offset: Some("+02:00"),
        gps: Some((48.8584, -2.2945)),
        ..Default::default()
    };
    let bytes = fixtures::with_exif(&fixtures::jpeg(300, 200), &spec);
    let hidden = run(&bytes);
    let exif = hidden.exif.expect("exif");
    assert_eq!(exif.make.as_deref(), Some("Canon"));
    assert_eq!(exif.model.as_deref(), Some("EOS 5D"));
    assert_eq!(exif.taken_at.as_deref(), Some("2024-06-01T14:30:05+02:00"));
    assert_eq!(exif.gps, None, "GPS is dropped by default");

    let shown = process(
        &bytes,
        &Options {
            keep_gps: true,
            ..Options::default()
        },
    )
    .unwrap();
    let gps = shown.exif.unwrap().gps.expect("gps kept when allowed");
    assert!(
        (gps.lat - 48.8584).abs() < 1e-4 && (gps.lon + 2.2945).abs() < 1e-4,
        "{gps:?}"
    );

    for r in &shown.renditions {
        assert!(
            !fixtures::has_metadata(&r.bytes),
            "{:?} carries metadata",
            r.kind
        );
    }
    assert!(fixtures::has_metadata(&bytes), "the check itself sees EXIF");
}

#[test]
fn transparency_is_kept_in_png_renditions() {
    let p = run(&fixtures::png_with_alpha(600, 400));
    for r in &p.renditions {
        assert_eq!(r.content_type, "image/png");
        let img = decode(&r.bytes);
        let (w, h) = img.dimensions();
        assert_eq!(
            img.get_pixel(w - 2, h / 2)[3],
            0,
            "right half stays transparent"
        );
        assert_eq!(img.get_pixel(1, h / 2)[3], 255);
    }
    let opaque = run(&fixtures::png(600, 400));
    assert!(
        opaque
            .renditions
            .iter()
            .all(|r| r.content_type == "image/jpeg"),
        "opaque PNGs become JPEG"
    );
}

#[test]
fn broken_images_fail_with_a_reason() {
    let jpeg = fixtures::jpeg(800, 600);
    let truncated = &jpeg[..jpeg.len() / 2];
    assert!(matches!(
        process(truncated, &Options::default()),
        Err(ImagingError::Corrupt(_))
    ));
    let png = fixtures::png(800, 600);
    assert!(matches!(
        process(&png[..png.len() / 2], &Options::default()),
        Err(ImagingError::Corrupt(_))
    ));
    let mut garbage = vec![0xFF, 0xD8, 0xFF, 0xE0];
    garbage.extend(std::iter::repeat_n(0x5A, 5000));
    assert!(process(&garbage, &Options::default()).is_err());
    let bomb = fixtures::png_bomb(50_000, 50_000);
    assert!(matches!(
        process(&bomb, &Options::default()),
        Err(ImagingError::PixelLimit { .. })
    ));
}

/// PNGs are shrunk while they decode: 16-bit, interlaced and large ones give the same picture
/// as a plain 8-bit file, and the red quadrant is still red and top left.
#[test]
fn deep_interlaced_and_large_pngs_shrink_while_decoding() {
    let plain = run(&fixtures::png(2400, 1800));
    for (name, bytes) in [
        ("16-bit RGBA", fixtures::deep_png(2400, 1800)),
        ("interlaced", fixtures::interlaced_png(2400, 1800)),
    ] {
        let p = run(&bytes);
        assert_eq!((p.width, p.height), (2400, 1800), "{name}");
        let preview = &p.renditions[1];
        assert_eq!(
            (preview.width, preview.height),
            (plain.renditions[1].width, plain.renditions[1].height),
            "{name}"
        );
        let pixels = decode(&preview.bytes);
        assert!(is_red(pixels.get_pixel(100, 100)), "{name}");
        assert!(!is_red(pixels.get_pixel(900, 700)), "{name}");
        assert_eq!(preview.content_type, "image/jpeg", "{name}: opaque");
    }
    // A small interlaced file decodes at full size, every pass in its place.
    let small = run(&fixtures::interlaced_png(37, 23));
    let thumb = decode(&small.renditions[0].bytes);
    assert_eq!(thumb.dimensions(), (37, 23));
    assert!(is_red(thumb.get_pixel(3, 3)) && !is_red(thumb.get_pixel(30, 20)));
}

/// A GIF frame larger than its screen is refused from the headers when it breaks the pixel
/// limit, and one within the limit fails as a truncated image without taking its size.
#[test]
fn gif_frame_bombs_are_refused() {
    let over = fixtures::gif_frame_bomb(20_000, 10_000);
    assert!(matches!(
        process(&over, &Options::default()),
        Err(ImagingError::PixelLimit {
            width: 20_000,
            height: 10_000,
            ..
        })
    ));
    let at_limit = fixtures::gif_frame_bomb(10_000, 10_000);
    assert!(matches!(
        process(&at_limit, &Options::default()),
        Err(ImagingError::Corrupt(_))
    ));
}

/// An image whose processing needs more memory than the whole budget is refused before it is
/// decoded, with its own code.
#[test]
fn the_decode_budget_refuses_what_it_cannot_hold() {
    let progressive = fixtures::progressive_jpeg(3000, 2000);
    let options = Options {
        max_decode_bytes: 20 << 20,
        ..Options::default()
    };
    let err = process(&progressive, &options).unwrap_err();
    assert!(matches!(err, ImagingError::DecodeLimit { .. }), "{err:?}");
    assert_eq!(err.code().as_str(), "decode_limit_exceeded");
    assert!(err.to_string().contains("decode budget"), "{err}");
    let p = run(&progressive);
    assert!(is_red(decode(&p.renditions[1].bytes).get_pixel(50, 50)));
}

#[test]
fn cmyk_and_icc_profiled_images_become_srgb() {
    let cmyk = run(&fixtures::cmyk_jpeg(400, 300));
    let preview = decode(&cmyk.renditions[1].bytes);
    assert!(
        is_red(preview.get_pixel(10, 10)),
        "CMYK red stays red: {:?}",
        preview.get_pixel(10, 10)
    );
    let grey = preview.get_pixel(390, 290);
    assert!(
        (100..160).contains(&grey[0]) && grey[0].abs_diff(grey[2]) < 12,
        "50% black is mid grey: {grey:?}"
    );

    // A saturated Display P3 green lies outside sRGB: converted, its red channel drops to ~0.
    let p3 = run(&fixtures::display_p3_jpeg(64, 64, [50, 200, 50]));
    let px = *decode(&p3.renditions[1].bytes).get_pixel(32, 32);
    assert!(px[0] < 25 && px[1] > 190, "P3 converted to sRGB: {px:?}");
}

/// Truncations and corrupted bytes of every format give an answer (usually an error), never a
/// panic or a hang. A small deterministic stand-in for the fuzzing the parsers deserve.
#[test]
fn damaged_files_never_panic() {
    let originals = [
        fixtures::with_exif(
            &fixtures::jpeg(160, 120),
            &ExifSpec {
                orientation: Some(6),
                gps: Some((1.0, 2.0)),
                ..Default::default()
            },
        ),
        fixtures::cmyk_jpeg(96, 64),
        fixtures::png_with_alpha(96, 64),
        fixtures::gif(96, 64),
        fixtures::webp(96, 64),
        fixtures::interlaced_png(96, 64),
        fixtures::deep_png(96, 64),
        fixtures::progressive_jpeg(96, 64),
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for original in &originals {
        for cut in (1..original.len()).step_by(original.len() / 40 + 1) {
            let _ = imagelake_imaging::inspect(&original[..cut], &Options::default());
            let _ = process(&original[..cut], &Options::default());
        }
        for _ in 0..60 {
            let mut damaged = original.clone();
            for _ in 0..4 {
                let at = (next() as usize) % damaged.len();
                damaged[at] = next() as u8;
            }
            let _ = imagelake_imaging::inspect(&damaged, &Options::default());
            let _ = process(&damaged, &Options::default());
        }
    }
}
