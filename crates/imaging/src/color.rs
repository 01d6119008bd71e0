//! Colour management: every rendition is sRGB.
//!
//! An embedded ICC profile (Display P3, Adobe RGB, a printer's CMYK, ...) is converted to sRGB with
//! `moxcms`; CMYK without a profile uses the naive formula; grey becomes RGB. An unreadable profile
//! is ignored (the pixels are taken as sRGB) rather than failing the image.

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// Converts interleaved 8-bit samples with `channels` channels (1 grey, 3 RGB, 4 CMYK) and an
/// optional ICC profile to sRGB RGB, 3 bytes per pixel.
pub fn to_srgb(data: Vec<u8>, channels: u8, icc: Option<&[u8]>) -> Vec<u8> {
    let profile = icc.and_then(|b| ColorProfile::new_from_slice(b).ok());
    if let Some(profile) = profile.filter(|p| matches_layout(p, channels) && !is_srgb(p)) {
        let src_layout = match channels {
            1 => Layout::Gray,
            3 => Layout::Rgb,
            _ => Layout::Rgba,
        };
        let srgb = ColorProfile::new_srgb();
        if let Ok(t) = profile.create_transform_8bit(
            src_layout,
            &srgb,
            Layout::Rgb,
            TransformOptions::default(),
        ) {
            let mut out = vec![0u8; data.len() / channels as usize * 3];
            if t.transform(&data, &mut out).is_ok() {
                return out;
            }
        }
    }
    match channels {
        1 => data.iter().flat_map(|&g| [g, g, g]).collect(),
        4 => data.chunks_exact(4).flat_map(cmyk_to_rgb).collect(),
        _ => data,
    }
}

/// Converts the colour part of RGBA pixels in place, leaving alpha alone.
pub fn rgba_to_srgb(data: &mut [u8], icc: Option<&[u8]>) {
    let Some(profile) = icc.and_then(|b| ColorProfile::new_from_slice(b).ok()) else {
        return;
    };
    if profile.color_space != DataColorSpace::Rgb || is_srgb(&profile) {
        return;
    }
    let srgb = ColorProfile::new_srgb();
    if let Ok(t) = profile.create_transform_8bit(
        Layout::Rgba,
        &srgb,
        Layout::Rgba,
        TransformOptions::default(),
    ) {
        let mut out = vec![0u8; data.len()];
        if t.transform(data, &mut out).is_ok() {
            data.copy_from_slice(&out);
        }
    }
}

fn matches_layout(profile: &ColorProfile, channels: u8) -> bool {
    matches!(
        (profile.color_space, channels),
        (DataColorSpace::Gray, 1) | (DataColorSpace::Rgb, 3) | (DataColorSpace::Cmyk, 4)
    )
}

/// Profiles with sRGB primaries need no transform (the common case for camera JPEGs, whose
/// embedded sRGB profiles differ from the built-in one only in rounding).
fn is_srgb(profile: &ColorProfile) -> bool {
    let srgb = ColorProfile::new_srgb();
    let close = |a: moxcms::Xyzd, b: moxcms::Xyzd| {
        (a.x - b.x).abs() < 2e-3 && (a.y - b.y).abs() < 2e-3 && (a.z - b.z).abs() < 2e-3
    };
    profile.color_space == DataColorSpace::Rgb
        && close(profile.red_colorant, srgb.red_colorant)
        && close(profile.green_colorant, srgb.green_colorant)
        && close(profile.blue_colorant, srgb.blue_colorant)
}

/// CMYK (0 = no ink) to RGB without a profile.
fn cmyk_to_rgb(p: &[u8]) -> [u8; 3] {
    let k = 255 - u16::from(p[3]);
    let channel = |v: u8| ((255 - u16::from(v)) * k / 255) as u8;
    [channel(p[0]), channel(p[1]), channel(p[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_without_profile() {
        let out = to_srgb(vec![0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0], 4, None);
        assert_eq!(out, vec![255, 255, 255, 0, 0, 0, 0, 255, 255]);
    }

    #[test]
    fn grey_expands_to_rgb() {
        assert_eq!(to_srgb(vec![7], 1, None), vec![7, 7, 7]);
    }

    #[test]
    fn garbage_profile_is_ignored() {
        assert_eq!(to_srgb(vec![1, 2, 3], 3, Some(b"nonsense")), vec![1, 2, 3]);
    }
}
