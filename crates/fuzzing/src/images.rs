//! Image bytes: sniffing and header inspection, the whole processing step, EXIF.

use imagelake_core::paths::RenditionKind;
use imagelake_imaging::{ImagingError, Options};

/// Limits small enough that one input is processed in milliseconds, so the fuzzer explores
/// rather than decodes; the code paths are those of the default limits.
const OPTIONS: Options = Options {
    max_pixels: 1 << 20,
    max_decode_bytes: 256 << 20,
    keep_gps: true,
};

/// Format sniffing and header inspection: an accepted image is within both limits, and its
/// format is the one its magic bytes name.
pub fn inspect(data: &[u8]) {
    match imagelake_imaging::inspect(data, &OPTIONS) {
        Ok(found) => {
            assert_eq!(Ok(found.format), imagelake_imaging::sniff(data));
            assert!(found.width > 0 && found.height > 0, "{found:?}");
            assert!(u64::from(found.width) * u64::from(found.height) <= OPTIONS.max_pixels);
            assert!(found.decode_bytes <= OPTIONS.max_decode_bytes, "{found:?}");
            assert!(found.decode_bytes >= data.len() as u64, "{found:?}");
        }
        Err(e) => assert_clear(&e),
    }
}

/// The whole processing step: it ends in facts or a clear error, and never allocates more than
/// `inspect` promised the workers it would (the decode budget they reserve).
pub fn process(data: &[u8]) {
    let promised = imagelake_imaging::inspect(data, &OPTIONS);
    let (outcome, peak) = crate::peak_of(|| imagelake_imaging::process(data, &OPTIONS));
    // The promise holds however processing ends: a decoder that allocates and then fails is
    // as much a bomb as one that succeeds.
    if let Ok(promised) = &promised {
        let held = (peak + data.len()) as u64;
        assert!(
            held <= promised.decode_bytes,
            "processing held {held} bytes, over the {} promised",
            promised.decode_bytes
        );
    }
    let processed = match (promised, outcome) {
        (_, Err(e)) => return assert_clear(&e),
        (Err(e), Ok(_)) => panic!("inspect refused ({e}) what process accepted"),
        (Ok(_), Ok(processed)) => processed,
    };
    assert!(processed.width > 0 && processed.height > 0);
    assert_eq!(
        processed.average_color.len(),
        7,
        "{}",
        processed.average_color
    );
    let kinds: Vec<_> = processed.renditions.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [RenditionKind::Thumb, RenditionKind::Preview]);
    for r in &processed.renditions {
        assert!(r.width.max(r.height) <= r.kind.max_side(), "{:?}", r.kind);
        assert!(r.width > 0 && r.height > 0 && !r.bytes.is_empty());
    }
}

/// EXIF reading: what it finds is in range, or nothing is found.
pub fn exif(data: &[u8]) {
    let Some(facts) = imagelake_imaging::exif::read(data) else {
        return;
    };
    if let Some(o) = facts.orientation {
        assert!((1..=8).contains(&o), "orientation {o}");
    }
    if let Some(gps) = &facts.gps {
        assert!(gps.lat.abs() <= 90.0 && gps.lon.abs() <= 180.0, "{gps:?}");
    }
    for text in [&facts.make, &facts.model, &facts.taken_at]
        .into_iter()
        .flatten()
    {
        assert!(
            !text.is_empty() && !text.chars().any(char::is_control),
            "{text:?}"
        );
    }
    if let Some(at) = &facts.taken_at {
        let (local, offset) = at.split_at(at.len().min(19));
        assert!(
            chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S").is_ok(),
            "taken_at {at:?}"
        );
        if !offset.is_empty() {
            let minutes = chrono::DateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%:z")
                .map(|t| t.offset().local_minus_utc() / 60);
            assert!(
                minutes.is_ok_and(|m| (-12 * 60..=14 * 60).contains(&m)),
                "taken_at {at:?}"
            );
        }
    }
}

/// A refusal a client can act on: a message, and one of the imaging codes.
fn assert_clear(e: &ImagingError) {
    assert!(!e.to_string().trim().is_empty(), "{e:?}");
}

#[cfg(test)]
mod tests {
    use imagelake_imaging::fixtures;

    use super::*;

    /// The process target is only as strong as its limits: small ordinary images of every
    /// format pass them and are processed, so the memory promise is checked on real decodes.
    #[test]
    fn small_images_pass_the_targets_limits() {
        for image in [
            fixtures::png(24, 16),
            fixtures::jpeg(40, 30),
            fixtures::gif(16, 12),
            fixtures::webp(24, 16),
        ] {
            imagelake_imaging::process(&image, &OPTIONS).unwrap();
        }
    }
}
