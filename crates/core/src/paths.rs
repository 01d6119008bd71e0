//! Every key the system writes in the object store, in one place.
//!
//! Keys are built only from ids (UUIDs) and fixed words, never from anything a client sent, so a
//! filename such as `../../x` can never reach a storage path.

use crate::{CustomerId, ImageId};

/// The uploaded bytes, exactly as received.
pub fn original(customer: CustomerId, image: ImageId) -> String {
    format!("originals/{customer}/{image}")
}

/// The customer and image an original's key names; `None` for any other key.
pub fn parse_original(key: &str) -> Option<(CustomerId, ImageId)> {
    let rest = key.strip_prefix("originals/")?;
    let (customer, image) = rest.split_once('/')?;
    Some((customer.parse().ok()?, image.parse().ok()?))
}

/// One rendition (`thumb`, `preview`) beside the original.
pub fn rendition(customer: CustomerId, image: ImageId, kind: RenditionKind) -> String {
    format!("renditions/{customer}/{image}/{}", kind.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_from_ids_only() {
        let (c, i) = (CustomerId::new(), ImageId::new());
        assert_eq!(original(c, i), format!("originals/{c}/{i}"));
        assert_eq!(
            rendition(c, i, RenditionKind::Thumb),
            format!("renditions/{c}/{i}/thumb")
        );
        assert_eq!(
            RenditionKind::parse("preview"),
            Some(RenditionKind::Preview)
        );
        assert_eq!(RenditionKind::parse("../x"), None);
        assert_eq!(parse_original(&original(c, i)), Some((c, i)));
        assert_eq!(parse_original(&format!("renditions/{c}/{i}/thumb")), None);
        assert_eq!(parse_original(&format!("originals/{c}/{i}/x")), None);
        assert_eq!(parse_original("originals/x/y"), None);
    }
}
