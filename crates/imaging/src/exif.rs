//! The EXIF facts worth indexing, read with `kamadak-exif` from any container it knows.

use std::io::Cursor;

use chrono::{NaiveDate, NaiveTime};
use exif::{In, Reader, Tag, Value};
use imagelake_core::records::{ExifFacts, Gps};

/// Reads make, model, capture time, orientation and location. Images without EXIF, or with
/// EXIF too broken to parse, yield `None`: missing metadata is never a processing failure.
pub fn read(bytes: &[u8]) -> Option<ExifFacts> {
    let exif = Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()?;
    let field = |tag| exif.get_field(tag, In::PRIMARY);
    let text = |tag| field(tag).and_then(|f| ascii(&f.value));
    let taken_at = text(Tag::DateTimeOriginal)
        .or_else(|| text(Tag::DateTime))
        .and_then(|t| camera_time(&t))
        .map(
            |t| match text(Tag::OffsetTimeOriginal).filter(|o| valid_offset(o)) {
                Some(offset) => format!("{t}{offset}"),
                None => t,
            },
        );
    let orientation = field(Tag::Orientation)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|o| u16::try_from(o).ok())
        .filter(|o| (1..=8).contains(o));
    let gps = gps(&exif);
    let facts = ExifFacts {
        make: text(Tag::Make),
        model: text(Tag::Model),
        taken_at,
        orientation,
        gps,
    };
    (facts != ExifFacts::default()).then_some(facts)
}

fn ascii(value: &Value) -> Option<String> {
    let Value::Ascii(parts) = value else {
        return None;
    };
    let raw = parts.first()?;
    // Control characters (NUL padding included) go first, so a text of nothing else is none.
    let s: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// `2019:05:01 12:34:56` -> `2019-05-01T12:34:56`; anything else is dropped, a day or a time
/// that does not exist (`2023:02:29`, `24:00:00`) included.
fn camera_time(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    if b.len() < 19 || b[4] != b':' || b[7] != b':' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let digits = [0..4, 5..7, 8..10, 11..13, 14..16, 17..19];
    if digits
        .iter()
        .any(|r| !b[r.clone()].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let number = |r: std::ops::Range<usize>| raw[r].parse::<u32>().ok();
    let year = i32::try_from(number(0..4)?).ok().filter(|y| *y > 0)?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    NaiveTime::from_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
    Some(format!(
        "{}-{}-{}T{}:{}:{}",
        &raw[0..4],
        &raw[5..7],
        &raw[8..10],
        &raw[11..13],
        &raw[14..16],
        &raw[17..19]
    ))
}

/// A UTC offset as EXIF writes it, `+HH:MM`, within the offsets in use (-12:00 to +14:00).
fn valid_offset(o: &str) -> bool {
    let b = o.as_bytes();
    if b.len() != 6
        || !(b[0] == b'+' || b[0] == b'-')
        || b[3] != b':'
        || ![1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit())
    {
        return false;
    }
    let (Ok(hours), Ok(minutes)) = (o[1..3].parse::<u32>(), o[4..6].parse::<u32>()) else {
        return false;
    };
    minutes < 60 && hours * 60 + minutes <= if b[0] == b'+' { 14 * 60 } else { 12 * 60 }
}

fn gps(exif: &exif::Exif) -> Option<Gps> {
    let coordinate = |tag, reference, negative: &str| {
        let value = &exif.get_field(tag, In::PRIMARY)?.value;
        let Value::Rational(parts) = value else {
            return None;
        };
        if parts.len() < 3 || parts.iter().any(|r| r.denom == 0) {
            return None;
        }
        let degrees = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
        let sign = match exif
            .get_field(reference, In::PRIMARY)
            .and_then(|f| ascii(&f.value))
        {
            Some(r) if r.eq_ignore_ascii_case(negative) => -1.0,
            _ => 1.0,
        };
        Some(sign * degrees)
    };
    let lat = coordinate(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S")?;
    let lon = coordinate(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W")?;
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some(Gps { lat, lon })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_camera_times() {
        assert_eq!(
            camera_time("2019:05:01 12:34:56").as_deref(),
            Some("2019-05-01T12:34:56")
        );
        assert_eq!(camera_time("0000:00:00 00:00:00"), None);
        assert_eq!(camera_time("yesterday"), None);
        assert!(valid_offset("+02:00"));
        assert!(!valid_offset("02:00"));
    }

    /// Found by the `exif` fuzz target: days and times that do not exist were kept.
    #[test]
    fn impossible_times_and_offsets_are_dropped() {
        assert_eq!(
            camera_time("2024:02:29 23:59:59").as_deref(),
            Some("2024-02-29T23:59:59")
        );
        for impossible in [
            "2023:02:29 23:59:58",
            "2019:13:01 12:00:00",
            "2019:04:31 12:00:00",
            "2019:05:01 24:00:00",
            "2019:05:01 12:60:00",
            "2019:05:01 12:00:61",
        ] {
            assert_eq!(camera_time(impossible), None, "{impossible}");
        }
        assert!(valid_offset("+14:00") && valid_offset("-12:00") && valid_offset("+05:45"));
        for impossible in ["+14:30", "-13:00", "+02:60", "+99:99"] {
            assert!(!valid_offset(impossible), "{impossible}");
        }
    }

    /// Found by the `exif` fuzz target: a text of control characters only became `""`.
    #[test]
    fn texts_of_control_characters_are_none() {
        let text = |raw: &[u8]| ascii(&Value::Ascii(vec![raw.to_vec()]));
        assert_eq!(text(b"\x01\x02"), None);
        assert_eq!(text(b" \x01 \0"), None);
        assert_eq!(text(b"Can\x07on \0\0").as_deref(), Some("Canon"));
    }

    #[test]
    fn no_exif_is_none() {
        assert_eq!(read(b"not an image"), None);
    }
}
