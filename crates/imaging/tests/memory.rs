//! What processing allocates stays within what `inspect` says it will (`decode_bytes`, which
//! the workers reserve from their shared budget), for the inputs that cost the most memory a
//! byte: 16-bit RGBA PNGs, interlaced PNGs, frame-bomb GIFs, progressive JPEGs and WebP.
//!
//! The allocator counts every Rust allocation; libjpeg-turbo's own (C) allocations are not
//! seen, so the JPEG case measures the pure-Rust decoder when the crate is built without the
//! `turbojpeg` feature (the test suite runs both builds). One test, so no other test's
//! allocations fall into a measurement.

use imagelake_core::ErrorCode;
use imagelake_imaging::{ImagingError, Options, fixtures, inspect, process};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};

#[global_allocator]
static GLOBAL: &PeakMemAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated at the peak of `f`, above what was allocated before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    GLOBAL.reset_peak_memory();
    let out = f();
    (out, GLOBAL.get_peak_memory())
}

#[test]
fn processing_stays_within_its_estimate() {
    let options = Options::default();
    let cases = [
        (
            "16-bit RGBA PNG, 24 MP",
            fixtures::deep_png(6000, 4000),
            6000 * 4000 * 8,
        ),
        (
            "16-bit RGBA PNG, 60000 px wide",
            fixtures::deep_png(60_000, 60),
            60_000 * 60 * 8,
        ),
        (
            "16-bit RGBA PNG, 1500000 px wide, 8 rows",
            fixtures::deep_png(1_500_000, 8),
            1_500_000 * 8 * 8,
        ),
        (
            "interlaced PNG, 6 MP",
            fixtures::interlaced_png(3000, 2000),
            3000 * 2000 * 3,
        ),
        (
            "progressive JPEG, 6 MP",
            fixtures::progressive_jpeg(3000, 2000),
            3000 * 2000 * 3,
        ),
        ("WebP, 4 MP", fixtures::webp(2400, 1800), 2400 * 1800 * 4),
    ];
    for (name, bytes, raw) in cases {
        let estimate = inspect(&bytes, &options).unwrap().decode_bytes;
        let (processed, peak) = peak_of(|| process(&bytes, &options));
        processed.unwrap_or_else(|e| panic!("{name}: {e}"));
        // The original is in memory all along: it counts against the estimate too.
        let held = (peak + bytes.len()) as u64;
        println!(
            "{name}: peak {peak} bytes + original {}, estimate {estimate}, raw pixels {raw}",
            bytes.len()
        );
        assert!(
            held <= estimate,
            "{name}: held {held} bytes, more than the {estimate} estimated"
        );
        if name.contains("24 MP") {
            assert!(
                peak < raw / 4,
                "{name}: shrunk while decoding, {peak} bytes"
            );
        }
    }

    // A 4x4 lossless WebP whose bitstream asks for 4096 Huffman groups of about 68 KiB each
    // (278 MB of tables from 45 KB): refused once its tables pass their allowance, within the
    // estimate the workers reserved.
    let bomb = fixtures::webp_huffman_bomb(4096);
    let estimate = inspect(&bomb, &options).unwrap().decode_bytes;
    let (outcome, peak) = peak_of(|| process(&bomb, &options));
    let refused = outcome.expect_err("a Huffman bomb is refused");
    assert!(
        matches!(refused, ImagingError::TableLimit { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.code(), ErrorCode::DecodeLimitExceeded);
    let held = (peak + bomb.len()) as u64;
    assert!(
        held <= estimate,
        "the Huffman bomb held {held} bytes, more than the {estimate} estimated"
    );

    // A 1x1 GIF whose frame declares 10000x10000 (at the pixel limit): fails as truncated,
    // without allocating the frame.
    let bomb = fixtures::gif_frame_bomb(10_000, 10_000);
    let (outcome, peak) = peak_of(|| process(&bomb, &options));
    assert!(outcome.is_err());
    assert!(peak < 8 << 20, "the frame bomb took {peak} bytes");
}
