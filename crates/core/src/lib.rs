//! The vocabulary every other imagelake crate speaks: identifiers, domain records, the clock,
//! durations, error codes and the typed paths of the object store.
//!
//! Nothing here does I/O, so every backend (SQLite, Firestore, local files, GCS) and every role
//! (API, worker, sweeper) agrees on one definition of an image, a customer and "now".

pub mod clock;
pub mod duration;
pub mod error;
pub mod events;
pub mod ids;
pub mod jobs;
pub mod lake;
pub mod paths;
pub mod records;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::ErrorCode;
pub use ids::{CustomerId, ImageId, JobId, KeyId};
