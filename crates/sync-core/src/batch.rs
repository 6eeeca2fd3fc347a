//! Chunking writes into the services' batch limits while keeping track of which source record each
//! per-record result belongs to.
//!
//! Marketo answers a batch with one `result` entry per input record, in input order; Dataverse `$batch`
//! answers one part per request. [`zip_results`] turns such answers back into (source index, result)
//! pairs and refuses a mismatched count instead of attributing results to the wrong records.

use std::collections::HashMap;
use std::hash::Hash;

/// Marketo's Lead Database limit: at most 300 records per sync / delete call.
pub const MARKETO_MAX_RECORDS: usize = 300;
/// Dataverse: at most 1000 requests per `$batch` (also the suggested `UpsertMultiple` size).
pub const DATAVERSE_MAX_REQUESTS: usize = 1000;

/// A slice of the input with its position in the whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a, T> {
    /// Index of `items[0]` in the original input.
    pub offset: usize,
    pub items: &'a [T],
}

/// Splits `items` into consecutive chunks of at most `max` (at least 1) items, in order.
pub fn chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = Chunk<'_, T>> {
    let max = max.max(1);
    items.chunks(max).enumerate().map(move |(i, c)| Chunk {
        offset: i * max,
        items: c,
    })
}

/// A batch answer that cannot be matched to its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offset {offset} sent {sent} records but got {received} results")]
pub struct ResultCountMismatch {
    pub offset: usize,
    pub sent: usize,
    pub received: usize,
}

/// Pairs each per-record result of a chunk with the index of its source record in the whole input.
pub fn zip_results<T, R>(
    chunk: &Chunk<'_, T>,
    results: Vec<R>,
) -> Result<Vec<(usize, R)>, ResultCountMismatch> {
    if results.len() != chunk.items.len() {
        return Err(ResultCountMismatch {
            offset: chunk.offset,
            sent: chunk.items.len(),
            received: results.len(),
        });
    }
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| (chunk.offset + i, r))
        .collect())
}

/// Groups item indices by a key (e.g. Marketo `action` + `lookupField`, which are per call), keeping the
/// first-appearance order of keys and the input order within each group.
pub fn group_by_key<T, K: Eq + Hash + Clone>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<usize>)> {
    let mut order: Vec<(K, Vec<usize>)> = Vec::new();
    let mut slot: HashMap<K, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        match slot.get(&k) {
            Some(&s) => order[s].1.push(i),
            None => {
                slot.insert(k.clone(), order.len());
                order.push((k, vec![i]));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_order_and_offsets() {
        let items: Vec<u32> = (0..701).collect();
        let cs: Vec<_> = chunks(&items, MARKETO_MAX_RECORDS).collect();
        assert_eq!(cs.len(), 3);
        assert_eq!(
            cs.iter()
                .map(|c| (c.offset, c.items.len()))
                .collect::<Vec<_>>(),
            vec![(0, 300), (300, 300), (600, 101)]
        );
        assert_eq!(chunks::<u32>(&[], 300).count(), 0);
        assert_eq!(chunks(&[1, 2], 0).count(), 2);
    }

    #[test]
    fn results_map_back_or_fail_loudly() {
        let items = vec!["a", "b", "c", "d", "e"];
        let second = chunks(&items, 3).nth(1).expect("two chunks");
        assert_eq!(
            zip_results(&second, vec!["ok-d", "err-e"]),
            Ok(vec![(3, "ok-d"), (4, "err-e")])
        );
        assert_eq!(
            zip_results(&second, vec!["only one"]),
            Err(ResultCountMismatch {
                offset: 3,
                sent: 2,
                received: 1
            })
        );
        assert_eq!(
            ResultCountMismatch {
                offset: 3,
                sent: 2,
                received: 1
            }
            .to_string(),
            "batch at offset 3 sent 2 records but got 1 results"
        );
    }

    #[test]
    fn grouping_is_stable() {
        let items = ["id:1", "email:2", "id:3", "msftId:4", "email:5"];
        let groups = group_by_key(&items, |s| s.split(':').next().unwrap_or("").to_owned());
        assert_eq!(
            groups,
            vec![
                ("id".to_owned(), vec![0, 2]),
                ("email".to_owned(), vec![1, 4]),
                ("msftId".to_owned(), vec![3])
            ]
        );
    }
}
