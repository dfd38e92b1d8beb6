//! The committed Turkish dataset (`datasets/turkish-support`) validated with tb-data's own
//! validator, plus the content rules of its datasheet.

#![expect(clippy::print_stderr, reason = "the test reports what it measured")]

use std::collections::HashMap;
use std::path::PathBuf;

use tb_data::stats::{char_ngrams, jaccard};
use tb_data::{Dataset, Split};
use unicode_normalization::is_nfc;

const CATEGORIES: &[&str] = &[
    "billing",
    "tariffs",
    "roaming",
    "number_portability",
    "sim_esim",
    "device_instalments",
    "mobile_internet",
    "fibre",
    "app",
    "complaints",
    "privacy_kvkk",
    "digital_services",
    "summarise",
    "rewrite_polite",
    "grammar",
    "translate_en_tr",
];

const NEAR_DUPLICATE: f64 = 0.5;

fn dataset(file: &str) -> Dataset {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "datasets",
        "turkish-support",
        file,
    ]
    .iter()
    .collect();
    Dataset::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn sizes_schema_and_categories() {
    let train = dataset("train.jsonl");
    let eval = dataset("eval.jsonl");
    assert_eq!(train.records.len(), 300);
    assert!(train.records.iter().all(|r| r.split.is_none()));
    let heldout = eval
        .records
        .iter()
        .filter(|r| r.split == Some(Split::Heldout))
        .count();
    let probes = eval
        .records
        .iter()
        .filter(|r| r.split == Some(Split::Paraphrase))
        .count();
    assert_eq!((heldout, probes, eval.records.len()), (60, 20, 80));
    train.check_categories(CATEGORIES).unwrap();
    eval.check_categories(CATEGORIES).unwrap();
    // ids unique across both files
    let mut ids: Vec<&str> = train
        .records
        .iter()
        .chain(&eval.records)
        .map(|r| r.id.as_str())
        .collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an id is used in both files");
    // every category is represented in train and held-out eval
    for c in CATEGORIES {
        assert!(
            train.records.iter().any(|r| r.category == *c),
            "{c} has no training items"
        );
        assert!(
            eval.records
                .iter()
                .any(|r| r.category == *c && r.split == Some(Split::Heldout)),
            "{c} has no held-out items"
        );
    }
}

#[test]
fn text_is_nfc_turkish() {
    const TURKISH: &[char] = &['ç', 'ğ', 'ı', 'ö', 'ş', 'ü', 'Ç', 'Ğ', 'İ', 'Ö', 'Ş', 'Ü'];
    for ds in [dataset("train.jsonl"), dataset("eval.jsonl")] {
        for r in &ds.records {
            for m in r.messages() {
                assert!(is_nfc(&m.content), "{}: not NFC", r.id);
                assert_eq!(
                    m.content.trim(),
                    m.content,
                    "{}: leading/trailing whitespace",
                    r.id
                );
            }
            assert!(
                r.full_text().contains(TURKISH),
                "{}: no Turkish letters",
                r.id
            );
            assert!(
                r.reference().contains(TURKISH),
                "{}: the answer has no Turkish letters",
                r.id
            );
        }
    }
}

#[test]
fn heldout_items_are_not_near_duplicates_and_probes_are_traced() {
    let train = dataset("train.jsonl");
    let eval = dataset("eval.jsonl");
    let grams: Vec<_> = train
        .records
        .iter()
        .map(|r| {
            (
                char_ngrams(&r.prompt_text(), 5),
                char_ngrams(&r.full_text(), 5),
            )
        })
        .collect();
    let by_id: HashMap<&str, usize> = train
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut worst = (0.0f64, String::new());
    for item in &eval.records {
        let (p, f) = (
            char_ngrams(&item.prompt_text(), 5),
            char_ngrams(&item.full_text(), 5),
        );
        match item.split {
            Some(Split::Heldout) => {
                for (i, (tp, tf)) in grams.iter().enumerate() {
                    let (jp, jf) = (jaccard(&p, tp), jaccard(&f, tf));
                    assert!(
                        jp < NEAR_DUPLICATE && jf < NEAR_DUPLICATE,
                        "{} is a near-duplicate of {} (prompt {jp:.3}, full {jf:.3})",
                        item.id,
                        train.records[i].id
                    );
                    if jf.max(jp) > worst.0 {
                        worst = (jf.max(jp), format!("{} ~ {}", item.id, train.records[i].id));
                    }
                }
            }
            Some(Split::Paraphrase) => {
                let source = item.probe_of.as_deref().unwrap_or_default();
                let i = *by_id.get(source).unwrap_or_else(|| {
                    panic!("{}: probe_of `{source}` is not a training id", item.id)
                });
                let (jp, jf) = (jaccard(&p, &grams[i].0), jaccard(&f, &grams[i].1));
                assert_eq!(item.category, train.records[i].category, "{}", item.id);
                // Reported, not asserted: probes reword their source on purpose.
                eprintln!(
                    "probe {:<32} of {:<24} jaccard full {jf:.3} prompt {jp:.3}",
                    item.id, source
                );
            }
            None => panic!("{}: eval items need a split", item.id),
        }
    }
    eprintln!(
        "largest held-out vs train jaccard: {:.3} ({})",
        worst.0, worst.1
    );
    // and training items are not copies of each other
    for i in 0..grams.len() {
        for j in i + 1..grams.len() {
            let jf = jaccard(&grams[i].1, &grams[j].1);
            assert!(
                jf < NEAR_DUPLICATE,
                "{} and {} are near-duplicates ({jf:.3})",
                train.records[i].id,
                train.records[j].id
            );
        }
    }
}
