//! The "claim → measured" table of DESIGN §1, filled with this run's numbers. Each comparison of
//! the two tunebench trainers also has its rows against real HF+PEFT (`hf-peft`). Ratios use the
//! per-method medians; a figure whose inputs are missing reads "not measured" (nothing is
//! estimated or carried over from elsewhere).

use polars::prelude::*;

use crate::bench::HF_PEFT;
use crate::error::{polars as perr, Result};
use crate::tables::{find_row, format_number, number, text, Tables, BEFORE_LABEL};

/// One row: the claim, what was measured, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The team's sentence.
    pub claim: &'static str,
    /// What tunebench measures for it.
    pub measure: String,
    /// The figure (a ratio such as `1.85×`), or `not measured`.
    pub value: String,
    /// The inputs of the figure.
    pub detail: String,
}

const NOT_MEASURED: &str = "not measured";

/// The names whose input is missing, comma-separated, in the order given.
fn missing(inputs: &[(&str, bool)]) -> String {
    inputs
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn method_value(t: &Tables, method: &str, column: &str) -> Option<(f64, i64)> {
    let row = find_row(&t.methods, "method", method)?;
    let v = number(&t.methods, column, row)?;
    let n = number(&t.methods, "runs", row).unwrap_or(0.0) as i64;
    Some((v, n))
}

fn ratio_claim(
    t: &Tables,
    claim: &'static str,
    column: &str,
    what: &str,
    unit: &str,
    num: &str,
    den: &str,
) -> Claim {
    let measure = format!("{what}, {num} ÷ {den}");
    match (method_value(t, num, column), method_value(t, den, column)) {
        (Some((a, na)), Some((b, nb))) if b != 0.0 => Claim {
            claim,
            measure,
            value: format!("{:.2}×", a / b),
            detail: format!(
                "{num} {} {unit} (median of {na}) vs {den} {} {unit} (median of {nb})",
                format_number(a),
                format_number(b)
            ),
        },
        (a, b) => Claim {
            claim,
            measure,
            value: NOT_MEASURED.into(),
            detail: format!(
                "missing: {}",
                missing(&[(num, a.is_none()), (den, b.is_none())])
            ),
        },
    }
}

/// The first value of `column` in `df` where `method` (if given) and `quant` match.
fn quant_value(df: &DataFrame, column: &str, method: Option<&str>, quant: &str) -> Option<f64> {
    (0..df.height())
        .filter(|&i| text(df, "quant", i).as_deref() == Some(quant))
        .filter(|&i| method.is_none_or(|m| text(df, "method", i).as_deref() == Some(m)))
        .find_map(|i| number(df, column, i))
}

/// Quant ratio `column(a) ÷ column(b)` for the first method that has both.
fn quant_ratio(df: &DataFrame, column: &str, a: &str, b: &str) -> Option<(String, f64, f64)> {
    let mut methods: Vec<String> = (0..df.height())
        .filter_map(|i| text(df, "method", i))
        .collect();
    methods.dedup();
    methods.into_iter().find_map(|m| {
        let x = quant_value(df, column, Some(&m), a)?;
        let y = quant_value(df, column, Some(&m), b)?;
        (y != 0.0).then_some((m, x, y))
    })
}

fn quant_claim(df: &DataFrame, claim: &'static str, column: &str, what: &str) -> Claim {
    let measure = format!("{what}, Q4_K_M ÷ F16 (same weights)");
    match quant_ratio(df, column, "Q4_K_M", "F16") {
        Some((m, x, y)) => Claim {
            claim,
            measure,
            value: format!("{:.3}×", x / y),
            detail: format!(
                "{m}: Q4_K_M {} vs F16 {}",
                format_number(x),
                format_number(y)
            ),
        },
        None => Claim {
            claim,
            measure,
            value: NOT_MEASURED.into(),
            detail: "needs Q4_K_M and F16 evaluations of one model".into(),
        },
    }
}

/// Commands and seconds from a trained adapter to a servable GGUF (`serving.json` of the runs),
/// Unsloth's one command against `den`'s (PEFT's merge + export; the HF+PEFT run's adapter
/// takes the same two commands).
fn serving_claim(t: &Tables, den: &str) -> Claim {
    let claim = "PEFT needs an extra merge, conversion is error-prone";
    let measure =
        format!("commands and seconds from checkpoint to a served model, unsloth ÷ {den}");
    let path = |method: &str| {
        let (secs, _) = method_value(t, method, "serve_s")?;
        let (commands, _) = method_value(t, method, "serve_commands")?;
        Some((commands, secs))
    };
    match (path("unsloth"), path(den)) {
        (Some((cu, su)), Some((cp, sp))) if sp > 0.0 => Claim {
            claim,
            measure,
            value: format!("{:.2}×", su / sp),
            detail: format!(
                "unsloth {cu:.0} command(s), {su:.1} s vs {den} {cp:.0} command(s), {sp:.1} s"
            ),
        },
        (u, p) => Claim {
            claim,
            measure,
            value: NOT_MEASURED.into(),
            detail: format!(
                "missing serving.json for: {}",
                missing(&[("unsloth", u.is_none()), (den, p.is_none())])
            ),
        },
    }
}

/// Eval perplexity of the base model (before) and of each trainer (after, the first run of
/// each), from the before/after table.
fn before_after_claim(t: &Tables, claim: &'static str) -> Claim {
    let b = &t.before_after;
    let ppl = |model: &str| find_row(b, "model", model).and_then(|i| number(b, "perplexity", i));
    let measure = format!("eval perplexity, {BEFORE_LABEL} → peft / unsloth");
    let after = |m: &str| ppl(m).map_or_else(|| NOT_MEASURED.to_string(), format_number);
    match ppl(BEFORE_LABEL) {
        Some(base) if ppl("peft").is_some() || ppl("unsloth").is_some() => Claim {
            claim,
            measure,
            value: format!(
                "{} → {} / {}",
                format_number(base),
                after("peft"),
                after("unsloth")
            ),
            detail: "exp(eval loss) on the same eval examples; the base without any adapter".into(),
        },
        _ => Claim {
            claim,
            measure,
            value: NOT_MEASURED.into(),
            detail: "needs the base model's eval loss (`tunebench eval-loss --run`) and a run's"
                .into(),
        },
    }
}

/// Eval perplexity of the base model (before) and of the HF+PEFT run (after): the companion of
/// [`before_after_claim`] against real PEFT.
fn before_after_hf_claim(t: &Tables, claim: &'static str) -> Claim {
    let b = &t.before_after;
    let ppl = |model: &str| find_row(b, "model", model).and_then(|i| number(b, "perplexity", i));
    let measure = format!("eval perplexity, {BEFORE_LABEL} → {HF_PEFT}");
    match (ppl(BEFORE_LABEL), ppl(HF_PEFT)) {
        (Some(base), Some(after)) => Claim {
            claim,
            measure,
            value: format!("{} → {}", format_number(base), format_number(after)),
            detail: "exp(eval loss) on the same eval examples; the base without any adapter".into(),
        },
        (base, after) => Claim {
            claim,
            measure,
            value: NOT_MEASURED.into(),
            detail: format!(
                "missing: {}",
                missing(&[(BEFORE_LABEL, base.is_none()), (HF_PEFT, after.is_none())])
            ),
        },
    }
}

/// chrF of the Q4_K_M evaluations, `num ÷ den`.
fn chrf_claim(q: &DataFrame, claim: &'static str, num: &str, den: &str) -> Claim {
    let chrf = |m: &str| quant_value(q, "chrf", Some(m), "Q4_K_M");
    let measure = format!("chrF at Q4_K_M, {num} ÷ {den}");
    match (chrf(num), chrf(den)) {
        (Some(a), Some(b)) if b != 0.0 => Claim {
            claim,
            measure,
            value: format!("{:.2}×", a / b),
            detail: format!("{num} {} vs {den} {}", format_number(a), format_number(b)),
        },
        (a, b) => Claim {
            claim,
            measure,
            value: NOT_MEASURED.into(),
            detail: format!(
                "needs Q4_K_M evaluations of both methods; missing: {}",
                missing(&[(num, a.is_none()), (den, b.is_none())])
            ),
        },
    }
}

/// The pairs every training comparison is shown for: unsloth against PEFT-style and against
/// real HF+PEFT, and PEFT-style against HF+PEFT.
const PAIRS: [(&str, &str); 3] = [("unsloth", "peft"), ("unsloth", HF_PEFT), ("peft", HF_PEFT)];

/// [`ratio_claim`] for each of [`PAIRS`].
fn pair_claims(
    t: &Tables,
    claim: &'static str,
    column: &str,
    what: &str,
    unit: &str,
) -> Vec<Claim> {
    PAIRS
        .iter()
        .map(|(num, den)| ratio_claim(t, claim, column, what, unit, num, den))
        .collect()
}

/// Mean sentence chrF of paraphrased ÷ held-out questions, one row per method (its Q4_K_M row
/// when it has both splits, else its first row that has), or one "not measured" row.
fn generalisation_claims(q: &DataFrame) -> Vec<Claim> {
    let claim = "synthetic data limits generalisation";
    let measure = "mean sentence chrF, paraphrased ÷ held-out";
    let mut rows: Vec<(String, String, f64, f64)> = (0..q.height())
        .filter_map(|i| {
            Some((
                text(q, "method", i)?,
                text(q, "quant", i)?,
                number(q, "chrf_heldout", i)?,
                number(q, "chrf_paraphrase", i)?,
            ))
        })
        .collect();
    // Q4_K_M first, so each method's first row is its served quant type where there is one.
    rows.sort_by_key(|r| r.1 != "Q4_K_M");
    let mut out: Vec<Claim> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (m, qt, h, p) in rows {
        if seen.contains(&m) {
            continue;
        }
        seen.push(m.clone());
        let detail = format!(
            "{m} {qt}: paraphrase {} vs held-out {}",
            format_number(p),
            format_number(h)
        );
        out.push(Claim {
            claim,
            measure: format!("{measure}, {m}"),
            value: if h != 0.0 {
                format!("{:.2}×", p / h)
            } else {
                NOT_MEASURED.into()
            },
            detail,
        });
    }
    if out.is_empty() {
        out.push(Claim {
            claim,
            measure: measure.into(),
            value: NOT_MEASURED.into(),
            detail: "needs an evaluation with results.jsonl over both splits".into(),
        });
    }
    out
}

/// Fills the claim table from the report's tables. Every comparison of unsloth with peft has
/// companions against real HF+PEFT (`hf-peft` runs or peer results), reading "not measured"
/// with "missing: hf-peft" where none was given.
pub fn claims(t: &Tables) -> Vec<Claim> {
    let faster = "Unsloth trains faster";
    let memory = "Unsloth needs less VRAM";
    let quality = "both reach similar quality";
    let mut out = pair_claims(t, faster, "tokens_per_s", "trained tokens/s", "tok/s");
    out.extend(pair_claims(t, faster, "train_s", "training seconds", "s"));
    out.extend(pair_claims(t, memory, "peak_rss_mib", "peak RSS", "MiB"));
    out.extend(pair_claims(
        t,
        quality,
        "final_train_loss",
        "final train loss",
        "",
    ));
    out.extend(pair_claims(t, quality, "eval_loss", "eval loss", ""));
    out.push(before_after_claim(t, quality));
    out.push(before_after_hf_claim(t, quality));
    let q = &t.quality;
    out.extend(
        PAIRS
            .iter()
            .map(|(num, den)| chrf_claim(q, quality, num, den)),
    );
    out.push(serving_claim(t, "peft"));
    out.push(serving_claim(t, HF_PEFT));
    out.push(quant_claim(
        q,
        "Q4 reduces accuracy",
        "perplexity",
        "reference perplexity",
    ));
    out.push(quant_claim(q, "Q4 reduces accuracy", "chrf", "chrF"));
    out.push(quant_claim(
        &t.inference,
        "Q4 speeds up inference",
        "decode_tokens_per_s",
        "decode tokens/s",
    ));
    out.extend(generalisation_claims(q));
    out
}

/// The claims as a DataFrame (for `tables.csv`).
pub fn claims_frame(claims: &[Claim]) -> Result<DataFrame> {
    df!(
        "claim" => claims.iter().map(|c| c.claim.to_string()).collect::<Vec<_>>(),
        "measure" => claims.iter().map(|c| c.measure.clone()).collect::<Vec<_>>(),
        "value" => claims.iter().map(|c| c.value.clone()).collect::<Vec<_>>(),
        "detail" => claims.iter().map(|c| c.detail.clone()).collect::<Vec<_>>(),
    )
    .map_err(perr("building the claims table"))
}
