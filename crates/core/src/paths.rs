//! Every key the system writes in the object store, in one place.
//!
//! Keys are built only from ids (UUIDs), validated names and fixed words, never from anything a
//! client sent, so a filename such as `../../x` can never reach a storage path. Each top-level
//! prefix has one owner: `originals/` and `renditions/` (the images, kept for the image
//! retention), the configured claims prefix (claim-checks waiting to be taken in), and `lake/`
//! (the lake's tables, kept for the lake retention), so a lifecycle rule per prefix never cuts
//! across owners.

use std::fmt;

use chrono::{DateTime, Utc};
use object_store::path::Path;

use crate::{CustomerId, ImageId};

/// The uploaded bytes, exactly as received.
pub const ORIGINALS: &str = "originals";
/// The sizes made from each original.
pub const RENDITIONS: &str = "renditions";
/// The lake's tables, one folder each, partitioned by hour.
pub const LAKE: &str = "lake";
/// Under the lake: records a table refused, with the reason, never silently dropped.
const QUARANTINE: &str = "quarantine";
/// The folder of `lake/` where the writers keep their manifests (readers skip names starting `_`).
pub const LAKE_WRITERS: &str = "_writers";

/// The uploaded bytes, exactly as received.
pub fn original(customer: CustomerId, image: ImageId) -> Path {
    Path::from(format!("{ORIGINALS}/{customer}/{image}"))
}

/// The customer and image an original's key names; `None` for any other key.
pub fn parse_original(key: &str) -> Option<(CustomerId, ImageId)> {
    let rest = key.strip_prefix(ORIGINALS)?.strip_prefix('/')?;
    let (customer, image) = rest.split_once('/')?;
    Some((customer.parse().ok()?, image.parse().ok()?))
}

/// The customer and image any of an image's objects (its original, a rendition) belongs to;
/// `None` for any other key.
pub fn parse_image_object(key: &str) -> Option<(CustomerId, ImageId)> {
    if let Some(ids) = parse_original(key) {
        return Some(ids);
    }
    let rest = key.strip_prefix(RENDITIONS)?.strip_prefix('/')?;
    let [customer, image, kind] = rest.split('/').collect::<Vec<_>>()[..] else {
        return None;
    };
    RenditionKind::parse(kind)?;
    Some((customer.parse().ok()?, image.parse().ok()?))
}

/// One rendition (`thumb`, `preview`) beside the original.
pub fn rendition(customer: CustomerId, image: ImageId, kind: RenditionKind) -> Path {
    Path::from(format!("{RENDITIONS}/{customer}/{image}/{}", kind.as_str()))
}

/// Every object an image has: its original and all its renditions.
pub fn image_objects(customer: CustomerId, image: ImageId) -> [Path; 3] {
    let [thumb, preview] = RenditionKind::ALL.map(|kind| rendition(customer, image, kind));
    [original(customer, image), thumb, preview]
}

/// The sizes the worker makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RenditionKind {
    Thumb,
    Preview,
}

impl RenditionKind {
    pub const ALL: [RenditionKind; 2] = [RenditionKind::Thumb, RenditionKind::Preview];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thumb => "thumb",
            Self::Preview => "preview",
        }
    }

    /// The longest side of the rendition, in pixels.
    pub const fn max_side(self) -> u32 {
        match self {
            Self::Thumb => 256,
            Self::Preview => 1024,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The folder where claim-check objects wait to be taken in by the image stream (configured as
/// `kafka.claims_prefix`). It may not lie in or over another owner's prefix: a claim is deleted
/// once taken in, so a prefix over `originals/` would let a message delete any image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsPrefix(Path);

impl ClaimsPrefix {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_end_matches('/');
        let path = Path::parse(trimmed)
            .ok()
            .filter(|p| p.as_ref() == trimmed && !trimmed.is_empty())
            .ok_or_else(|| format!("claims prefix {text:?} is not a folder such as \"claims/\""))?;
        let first = path.parts().next().map(|p| p.as_ref().to_owned());
        if let Some(owner) = [ORIGINALS, RENDITIONS, LAKE]
            .into_iter()
            .find(|owned| first.as_deref() == Some(*owned))
        {
            return Err(format!(
                "claims prefix {text:?} lies under {owner:?}, which holds other data"
            ));
        }
        Ok(Self(path))
    }

    /// The folder itself, for listing.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where `kafka produce` puts one file: a folder per message, then a cleaned file name.
    pub fn claim(&self, folder: &str, name: &str) -> Path {
        Path::from_iter(self.0.parts().chain([folder.into(), name.into()]))
    }

    /// The object a claim-check message names, if it lies strictly under this folder and is
    /// spelled exactly as stored (no `..` or empty parts).
    pub fn locate(&self, key: &str) -> Option<Path> {
        let path = Path::parse(key).ok().filter(|p| p.as_ref() == key)?;
        let rest = key.strip_prefix(self.0.as_ref())?.strip_prefix('/')?;
        (!rest.is_empty()).then_some(path)
    }
}

impl Default for ClaimsPrefix {
    fn default() -> Self {
        Self(Path::from("claims"))
    }
}

impl fmt::Display for ClaimsPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.0)
    }
}

impl serde::Serialize for ClaimsPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ClaimsPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for ClaimsPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// A lake table's name: lower-case letters, digits and `_`, starting with a letter, so it is a
/// folder name and a SQL identifier at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LakeTable(String);

impl LakeTable {
    pub fn parse(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.len() <= 63
            && name != QUARANTINE;
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "table {name:?}: expected lower-case letters, digits and _ (at most 63), starting with a letter"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LakeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// All of one table's files.
pub fn lake_table(table: &LakeTable) -> Path {
    Path::from_iter([LAKE, table.as_str()])
}

/// One hour of a table, Hive-style so query engines prune on `dt` and `hour`.
pub fn lake_partition(table: &LakeTable, hour: DateTime<Utc>) -> Path {
    Path::from_iter(
        [LAKE, table.as_str()]
            .into_iter()
            .chain(partition(hour).iter().map(String::as_str)),
    )
}

/// One Parquet file of a partition (of a table or of its quarantine).
pub fn lake_file(partition: &Path, name: &str) -> Path {
    partition.clone().join(format!("{name}.parquet"))
}

/// The marker written last, once a partition's files are complete.
pub fn lake_success(partition: &Path) -> Path {
    partition.clone().join("_SUCCESS")
}

/// The columns a table has had, kept beside its partitions (readers skip names starting `_`).
pub fn lake_schema(table: &LakeTable) -> Path {
    lake_table(table).join("_schema.json")
}

/// Where one source partition stands in the lake (see the lake's `manifest`); readers skip
/// names starting `_`.
pub fn lake_manifest(topic: &str, partition: i32) -> Path {
    Path::from_iter([LAKE, LAKE_WRITERS, topic, &format!("{partition}.json")])
}

/// The newest hour whose markers are written for every table a topic feeds.
pub fn lake_marked(topic: &str) -> Path {
    Path::from_iter([LAKE, LAKE_WRITERS, topic, "_marked.json"])
}

/// All of the records one table refused.
pub fn quarantine_table(table: &LakeTable) -> Path {
    Path::from_iter([LAKE, QUARANTINE, table.as_str()])
}

/// One hour of the records a table refused.
pub fn quarantine_partition(table: &LakeTable, hour: DateTime<Utc>) -> Path {
    Path::from_iter(
        [LAKE, QUARANTINE, table.as_str()]
            .into_iter()
            .chain(partition(hour).iter().map(String::as_str)),
    )
}

/// The hour a `.../dt=YYYY-MM-DD/hour=HH` folder holds: [`lake_partition`] read back.
pub fn partition_hour(folder: &Path) -> Option<DateTime<Utc>> {
    let parts: Vec<_> = folder.parts().collect();
    let [.., day, hour] = parts.as_slice() else {
        return None;
    };
    let day = day.as_ref().strip_prefix("dt=")?;
    let hour: u32 = hour.as_ref().strip_prefix("hour=")?.parse().ok()?;
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(hour, 0, 0)?.and_utc())
}

fn partition(hour: DateTime<Utc>) -> [String; 2] {
    [
        hour.format("dt=%Y-%m-%d").to_string(),
        hour.format("hour=%H").to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn image_keys_are_built_from_ids_only() {
        let (c, i) = (CustomerId::new(), ImageId::new());
        assert_eq!(original(c, i).as_ref(), format!("originals/{c}/{i}"));
        assert_eq!(
            rendition(c, i, RenditionKind::Thumb).as_ref(),
            format!("renditions/{c}/{i}/thumb")
        );
        assert_eq!(
            image_objects(c, i).map(|p| p.to_string()),
            [
                format!("originals/{c}/{i}"),
                format!("renditions/{c}/{i}/thumb"),
                format!("renditions/{c}/{i}/preview"),
            ]
        );
        assert_eq!(
            RenditionKind::parse("preview"),
            Some(RenditionKind::Preview)
        );
        assert_eq!(RenditionKind::parse("../x"), None);
        assert_eq!(parse_original(original(c, i).as_ref()), Some((c, i)));
        assert_eq!(parse_original(&format!("renditions/{c}/{i}/thumb")), None);
        for key in image_objects(c, i) {
            assert_eq!(parse_image_object(key.as_ref()), Some((c, i)), "{key}");
        }
        assert_eq!(parse_image_object(&format!("lake/{c}/{i}")), None);
        assert_eq!(parse_image_object(&format!("renditions/{c}")), None);
        assert_eq!(
            parse_image_object(&format!("renditions/{c}/{i}/huge")),
            None
        );
        assert_eq!(parse_image_object(&format!("originals/{c}/{i}/x")), None);
        assert_eq!(parse_original(&format!("originals/{c}/{i}/x")), None);
        assert_eq!(parse_original(&format!("originalsx/{c}/{i}")), None);
        assert_eq!(parse_original("originals/x/y"), None);
    }

    #[test]
    fn claims_stay_under_their_own_prefix() {
        let claims = ClaimsPrefix::default();
        assert_eq!(claims.to_string(), "claims/");
        assert_eq!(ClaimsPrefix::parse("claims").unwrap(), claims);
        assert_eq!(
            claims.claim("abc", "cat.jpg").as_ref(),
            "claims/abc/cat.jpg"
        );
        assert_eq!(
            claims.locate("claims/batch-1/cat.jpg").unwrap().as_ref(),
            "claims/batch-1/cat.jpg"
        );
        for bad in [
            "originals/c/i",
            "claims/../originals/c/i",
            "claims/",
            "claims",
            "claimsx/a",
            "/claims/a",
            "claims//a",
        ] {
            assert_eq!(claims.locate(bad), None, "{bad}");
        }
        let nested = ClaimsPrefix::parse("incoming/claims/").unwrap();
        assert!(nested.locate("incoming/claims/a/b.jpg").is_some());
        assert!(nested.locate("incoming/a.jpg").is_none());
        for bad in [
            "",
            "/",
            "originals/",
            "renditions",
            "lake/claims",
            "a//b",
            "../x",
        ] {
            assert!(ClaimsPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lake_keys_are_hive_partitions_by_hour() {
        let table = LakeTable::parse("upload_events").unwrap();
        let hour = Utc.with_ymd_and_hms(2026, 11, 30, 7, 0, 0).unwrap();
        let partition = lake_partition(&table, hour);
        assert_eq!(lake_table(&table).as_ref(), "lake/upload_events");
        assert_eq!(
            lake_file(&partition, "log-1").as_ref(),
            "lake/upload_events/dt=2026-11-30/hour=07/log-1.parquet"
        );
        assert_eq!(
            lake_success(&partition).as_ref(),
            "lake/upload_events/dt=2026-11-30/hour=07/_SUCCESS"
        );
        assert_eq!(
            lake_schema(&table).as_ref(),
            "lake/upload_events/_schema.json"
        );
        assert_eq!(partition_hour(&partition), Some(hour), "read back");
        assert_eq!(
            partition_hour(&quarantine_partition(&table, hour)),
            Some(hour)
        );
        assert_eq!(
            partition_hour(&Path::from("lake/t/dt=2026-11-30/hour=x")),
            None
        );
        assert_eq!(
            partition_hour(&Path::from("lake/t/dt=2026-13-30/hour=01")),
            None
        );
        assert_eq!(
            quarantine_partition(&table, hour).as_ref(),
            "lake/quarantine/upload_events/dt=2026-11-30/hour=07"
        );
        for bad in [
            "",
            "Events",
            "1x",
            "a-b",
            "a/b",
            "..",
            "quarantine",
            &"x".repeat(64),
        ] {
            assert!(LakeTable::parse(bad).is_err(), "{bad:?}");
        }
    }
}
