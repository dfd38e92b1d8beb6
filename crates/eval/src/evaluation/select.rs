//! Which dataset items a run evaluates ([`select_items`]).
//!
//! With [`RunSettings::per_split`] = N, each split (`heldout`, `paraphrase`, and the items
//! without a split as one more group) contributes at most N items, spread over its categories:
//! round k takes the k-th item of every category, categories in the order they first appear in
//! the file, until N items are taken. The chosen items keep their dataset order. So N at least the
//! number of categories gives every category of the split at least once, and the choice depends
//! only on the file, never on a seed. [`RunSettings::limit`] then keeps the first items of that
//! selection (of the whole dataset when `per_split` is not set).

use std::collections::HashSet;

use tb_data::{Dataset, Record};

use super::{Error, Result, RunSettings};

/// The items `settings` selects from `dataset`, in dataset order (see the module docs).
/// A `per_split` of 0 is an error.
pub fn select_items<'a>(dataset: &'a Dataset, settings: &RunSettings) -> Result<Vec<&'a Record>> {
    let records = &dataset.records;
    let chosen: Vec<&Record> = match settings.per_split {
        None => records.iter().collect(),
        Some(0) => {
            return Err(Error::InvalidInput(
                "per_split must be at least 1 item per split".into(),
            ))
        }
        Some(n) => {
            let mut keep = HashSet::new();
            let mut splits: Vec<_> = Vec::new();
            for r in records {
                if !splits.contains(&r.split) {
                    splits.push(r.split);
                }
            }
            for split in splits {
                let group: Vec<usize> = (0..records.len())
                    .filter(|&i| records[i].split == split)
                    .collect();
                keep.extend(round_robin(records, &group, n));
            }
            (0..records.len())
                .filter(|i| keep.contains(i))
                .map(|i| &records[i])
                .collect()
        }
    };
    Ok(chosen
        .into_iter()
        .take(settings.limit.unwrap_or(usize::MAX))
        .collect())
}

/// Up to `n` indices of `group` (indices into `records`, in file order), round-robin over
/// their categories in order of first appearance.
fn round_robin(records: &[Record], group: &[usize], n: usize) -> Vec<usize> {
    let mut by_category: Vec<(&str, Vec<usize>)> = Vec::new();
    for &i in group {
        let c = records[i].category.as_str();
        match by_category.iter_mut().find(|(name, _)| *name == c) {
            Some((_, items)) => items.push(i),
            None => by_category.push((c, vec![i])),
        }
    }
    let mut out = Vec::new();
    let rounds = by_category.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for k in 0..rounds {
        for (_, items) in &by_category {
            if out.len() == n {
                return out;
            }
            if let Some(&i) = items.get(k) {
                out.push(i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A dataset of `(id, category, split)` records.
    fn dataset(items: &[(&str, &str, Option<&str>)]) -> Dataset {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for (id, category, split) in items {
            let split = match split {
                Some("paraphrase") => ", \"split\": \"paraphrase\", \"probe_of\": \"t\"".into(),
                Some(s) => format!(", \"split\": \"{s}\""),
                None => String::new(),
            };
            writeln!(
                f,
                "{{\"id\": \"{id}\", \"category\": \"{category}\", \"instruction\": \"q {id}\", \"output\": \"a {id}\"{split}}}"
            )
            .unwrap();
        }
        Dataset::load(f.path()).unwrap()
    }

    fn ids(d: &Dataset, settings: &RunSettings) -> Vec<String> {
        select_items(d, settings)
            .unwrap()
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    fn per_split(n: usize) -> RunSettings {
        RunSettings {
            per_split: Some(n),
            ..RunSettings::default()
        }
    }

    fn mixed() -> Dataset {
        let h = Some("heldout");
        let p = Some("paraphrase");
        dataset(&[
            ("h-a1", "a", h),
            ("h-a2", "a", h),
            ("h-a3", "a", h),
            ("h-b1", "b", h),
            ("p-a1", "a", p),
            ("h-c1", "c", h),
            ("p-b1", "b", p),
            ("p-b2", "b", p),
            ("h-b2", "b", h),
        ])
    }

    #[test]
    fn without_per_split_the_limit_takes_the_first_items() {
        let d = mixed();
        assert_eq!(ids(&d, &RunSettings::default()).len(), 9);
        let first = RunSettings {
            limit: Some(2),
            ..RunSettings::default()
        };
        assert_eq!(ids(&d, &first), ["h-a1", "h-a2"]);
    }

    #[test]
    fn per_split_spreads_over_categories_and_keeps_file_order() {
        let d = mixed();
        // Held-out: round 1 takes a, b, c; paraphrase: a, b, then round 2 the second of b.
        assert_eq!(
            ids(&d, &per_split(3)),
            ["h-a1", "h-b1", "p-a1", "h-c1", "p-b1", "p-b2"]
        );
        // Round 2 adds the second item of a, then of b (first-appearance order of categories).
        assert_eq!(
            ids(&d, &per_split(4)),
            ["h-a1", "h-a2", "h-b1", "p-a1", "h-c1", "p-b1", "p-b2"]
        );
        assert_eq!(ids(&d, &per_split(1)), ["h-a1", "p-a1"]);
        // More than a split holds: all of it.
        assert_eq!(ids(&d, &per_split(100)).len(), 9);
        // The limit applies to the selection.
        let both = RunSettings {
            limit: Some(3),
            ..per_split(3)
        };
        assert_eq!(ids(&d, &both), ["h-a1", "h-b1", "p-a1"]);
    }

    #[test]
    fn items_without_a_split_are_one_more_group() {
        let d = dataset(&[
            ("x1", "a", None),
            ("x2", "a", None),
            ("h1", "a", Some("heldout")),
        ]);
        assert_eq!(ids(&d, &per_split(1)), ["x1", "h1"]);
    }

    #[test]
    fn zero_per_split_is_an_error() {
        let e = select_items(&mixed(), &per_split(0)).unwrap_err();
        assert!(e.to_string().contains("per_split"), "{e}");
    }

    /// What the demo relies on (`--per-split 16`): on the Turkish eval file, one held-out
    /// question and one paraphrase probe from each of its 16 categories.
    #[test]
    fn sixteen_per_split_of_the_turkish_file_matches_categories() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/turkish-support/eval.jsonl");
        let d = Dataset::load(&file).unwrap();
        let items = select_items(&d, &per_split(16)).unwrap();
        assert_eq!(items.len(), 32);
        let categories = |split| {
            let mut c: Vec<&str> = items
                .iter()
                .filter(|r| r.split == Some(split))
                .map(|r| r.category.as_str())
                .collect();
            c.sort_unstable();
            c
        };
        let heldout = categories(tb_data::Split::Heldout);
        assert_eq!(heldout, categories(tb_data::Split::Paraphrase));
        let mut distinct = heldout.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 16, "one item per category: {heldout:?}");
    }
}
