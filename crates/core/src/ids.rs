//! Identifiers. Every id is a UUIDv7: time-ordered, so ids sort by creation and make stable
//! tie-breakers for cursors.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A stored image.
    ImageId
);
id_type!(
    /// A customer account.
    CustomerId
);
id_type!(
    /// One API key of a customer (the key's secret is never stored).
    KeyId
);
id_type!(
    /// One unit of work on the queue.
    JobId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = ImageId::new();
        let b = ImageId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<ImageId>().unwrap(), a);
        assert!("../../etc".parse::<ImageId>().is_err());
    }
}
