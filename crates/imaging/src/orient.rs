//! EXIF orientation applied to pixels, so renditions and reported sizes are as displayed.

use crate::Pixels;

/// Whether the orientation swaps width and height (the 90-degree cases 5-8).
pub fn swaps_axes(orientation: u16) -> bool {
    (5..=8).contains(&orientation)
}

/// Returns the pixels as they should be displayed for an EXIF orientation 1-8.
pub fn apply(src: Pixels, orientation: u16) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return src;
    }
    let (w, h, c) = (
        src.width as usize,
        src.height as usize,
        src.channels as usize,
    );
    let (dw, dh) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    let mut data = vec![0u8; src.data.len()];
    for y in 0..h {
        for x in 0..w {
            // Destination of source pixel (x, y), per the EXIF 2.3 definition of each value.
            let (dx, dy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (h - 1 - y, x),
                7 => (h - 1 - y, w - 1 - x),
                _ => (y, w - 1 - x),
            };
            let s = (y * w + x) * c;
            let d = (dy * dw + dx) * c;
            data[d..d + c].copy_from_slice(&src.data[s..s + c]);
        }
    }
    Pixels {
        width: dw as u32,
        height: dh as u32,
        channels: src.channels,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2x1 image: red, green.
    fn strip() -> Pixels {
        Pixels {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![255, 0, 0, 0, 255, 0],
        }
    }

    #[test]
    fn rotates_and_mirrors() {
        let red = [255, 0, 0];
        let green = [0, 255, 0];
        let o6 = apply(strip(), 6);
        assert_eq!((o6.width, o6.height), (1, 2));
        assert_eq!(
            &o6.data[..3],
            &red,
            "90 degrees clockwise puts the left pixel on top"
        );
        let o8 = apply(strip(), 8);
        assert_eq!(
            &o8.data[..3],
            &green,
            "90 counter-clockwise puts the right pixel on top"
        );
        let o2 = apply(strip(), 2);
        assert_eq!(&o2.data[..3], &green);
        assert_eq!(apply(strip(), 1), strip());
        assert_eq!(apply(apply(strip(), 3), 3), strip());
    }
}
