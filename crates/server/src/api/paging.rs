//! Cursor pages over the store's listings, newest first: the opaque `cursor` the API hands out
//! (a row's time and id) and the filtered walk that bounds one request's work whatever the filter
//! matches.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use imagelake_core::Timestamp;

use crate::error::ApiError;

/// Rows a filtered page looks at, at most: the bound on one request's work.
pub const SCAN_LIMIT: usize = 5000;
const SCAN_BATCH: usize = 250;

/// Where a page starts: the last row of the page before, by its time and id.
pub type After<Id> = Option<(Timestamp, Id)>;

pub fn encode_cursor(at: Timestamp, id: &impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}/{id}", at.timestamp_micros()))
}

pub fn decode_cursor<Id: std::str::FromStr>(raw: &str) -> Result<(Timestamp, Id), ApiError> {
    let invalid =
        || ApiError::invalid("query parameter `cursor` is not a cursor this API returned");
    let text = URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (micros, id) = text.split_once('/').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    Ok((
        chrono::DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        id.parse().map_err(|_| invalid())?,
    ))
}

/// The query parameter `name`: a whole number from 1 to `max`.
pub fn parse_limit(name: &str, value: &str, max: usize) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "query parameter `{name}` must be an integer from 1 to {max}"
        ))),
    }
}

/// Up to `want` rows that `keep` keeps, read with `fetch(after, n)` in batches from `after`,
/// and where the next page starts if rows are left (the last row looked at, kept or not). With
/// `filtered` false every row is kept and one read does; otherwise at most [`SCAN_LIMIT`] rows
/// are looked at.
pub async fn filtered_page<T, Id, Fetch, Fut>(
    want: usize,
    mut after: After<Id>,
    filtered: bool,
    mut fetch: Fetch,
    key: impl Fn(&T) -> (Timestamp, Id),
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, After<Id>), ApiError>
where
    Id: Clone,
    Fetch: FnMut(After<Id>, usize) -> Fut,
    Fut: Future<Output = Result<Vec<T>, ApiError>>,
{
    // One extra row tells whether another page exists.
    let batch = if filtered {
        SCAN_BATCH.max(want + 1)
    } else {
        want + 1
    };
    let mut page = Vec::new();
    let mut scanned = 0;
    loop {
        let rows = fetch(after.clone(), batch).await?;
        let exhausted = rows.len() < batch;
        for row in rows {
            if page.len() == want {
                return Ok((page, after));
            }
            after = Some(key(&row));
            scanned += 1;
            if keep(&row) {
                page.push(row);
            }
        }
        if exhausted {
            return Ok((page, None));
        }
        if scanned >= SCAN_LIMIT {
            return Ok((page, after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = chrono::DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            decode_cursor::<uuid::Uuid>(&encode_cursor(at, &id)).unwrap(),
            (at, id)
        );
        assert!(decode_cursor::<uuid::Uuid>("garbage").is_err());
    }

    #[tokio::test]
    async fn a_filtered_walk_resumes_where_it_stopped() {
        let rows: Vec<i64> = (0..1000).rev().collect();
        let at = |n: i64| chrono::DateTime::from_timestamp(n, 0).unwrap();
        let fetch = |after: After<i64>, n: usize| {
            let from = after.map_or(0, |(_, id)| rows.iter().position(|&r| r == id).unwrap() + 1);
            let page = rows[from.min(rows.len())..]
                .iter()
                .take(n)
                .copied()
                .collect();
            async move { Ok::<_, ApiError>(page) }
        };
        let (page, next) = filtered_page(3, None, true, fetch, |&r| (at(r), r), |r| r % 100 == 0)
            .await
            .unwrap();
        assert_eq!(page, [900, 800, 700]);
        let (page, next) = filtered_page(3, next, true, fetch, |&r| (at(r), r), |r| r % 100 == 0)
            .await
            .unwrap();
        assert_eq!(page, [600, 500, 400]);
        assert!(next.is_some());
        let (all, last) = filtered_page(5, None, false, fetch, |&r| (at(r), r), |_| true)
            .await
            .unwrap();
        assert_eq!((all.len(), last.map(|(_, id)| id)), (5, Some(995)));
    }
}
