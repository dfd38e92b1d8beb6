//! LLM-as-judge with a fixed rubric: any Ollama model grades an answer against the reference
//! on a 1–5 scale and replies in JSON (Ollama's structured outputs enforce the shape).
//!
//! Off by default: an evaluation grades its answers only when [`RunSettings::judge`] names a
//! model (`tunebench eval --judge MODEL`). Judge scores from small models are noisy; report
//! them next to the reference-based metrics, never instead of them.
//!
//! [`RunSettings::judge`]: crate::evaluation::RunSettings::judge

use serde::{Deserialize, Serialize};

use crate::ollama::{self, ChatRequest, Message, OllamaClient, Options, Role};

/// The grading instructions, fixed so that scores stay comparable across runs.
pub const RUBRIC: &str = "You are a strict grader of answers written in Turkish by a customer-support assistant.\n\
Compare the ANSWER with the REFERENCE answer to the QUESTION and give one integer score:\n\
5 = correct and complete, same meaning as the reference, fluent Turkish;\n\
4 = correct, minor omissions or small language errors;\n\
3 = partly correct or missing important details;\n\
2 = mostly wrong, or not in Turkish;\n\
1 = wrong, irrelevant, empty or harmful.\n\
Judge meaning, not wording. Reply only with JSON: {\"score\": <1-5>, \"reason\": \"<one short sentence>\"}.";

/// Which model judges, and how it samples.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// The Ollama model that grades.
    pub model: String,
    /// Sampling options; greedy and seeded by default for repeatable grades.
    pub options: Options,
}

impl JudgeConfig {
    /// Greedy (temperature 0, seed 0), at most 256 tokens, 4096-token context.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            options: Options {
                temperature: Some(0.0),
                seed: Some(0),
                num_predict: Some(256),
                num_ctx: Some(4096),
                ..Options::default()
            },
        }
    }
}

/// A grade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// 1 (wrong) to 5 (correct and complete).
    pub score: u8,
    /// The judge's one-sentence reason.
    pub reason: String,
}

/// Why a grade could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The call to Ollama failed.
    #[error(transparent)]
    Ollama(#[from] ollama::Error),
    /// The judge's reply was not the JSON the rubric asks for.
    #[error("the judge's reply is not a grade ({reason}): {raw:?}")]
    Unparseable {
        /// The reply.
        raw: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// The JSON schema sent as `format`.
pub fn grade_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "score": { "type": "integer", "minimum": 1, "maximum": 5 },
            "reason": { "type": "string" }
        },
        "required": ["score", "reason"]
    })
}

/// Grades `answer` to `question` against `reference`.
pub fn judge(
    client: &OllamaClient,
    config: &JudgeConfig,
    question: &str,
    reference: &str,
    answer: &str,
) -> Result<Judgement, JudgeError> {
    let request = ChatRequest {
        model: config.model.clone(),
        messages: vec![
            Message::new(Role::System, RUBRIC),
            Message::new(
                Role::User,
                format!("QUESTION:\n{question}\n\nREFERENCE:\n{reference}\n\nANSWER:\n{answer}"),
            ),
        ],
        format: Some(grade_schema()),
        options: Some(config.options.clone()),
        ..ChatRequest::default()
    };
    let reply = client.chat(&request)?;
    parse_judgement(&reply.message.content)
}

/// Parses a reply: the first JSON object in it, with a score in 1..=5.
pub fn parse_judgement(raw: &str) -> Result<Judgement, JudgeError> {
    let bad = |reason: String| JudgeError::Unparseable {
        raw: raw.to_owned(),
        reason,
    };
    let start = raw.find('{').ok_or_else(|| bad("no JSON object".into()))?;
    let mut objects = serde_json::Deserializer::from_str(&raw[start..]).into_iter::<Judgement>();
    let judgement = match objects.next() {
        Some(Ok(j)) => j,
        Some(Err(e)) => return Err(bad(e.to_string())),
        None => return Err(bad("no JSON object".into())),
    };
    if !(1..=5).contains(&judgement.score) {
        return Err(bad(format!("score {} is outside 1..=5", judgement.score)));
    }
    Ok(judgement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grades() {
        let j = parse_judgement("{\"score\": 4, \"reason\": \"Doğru ama eksik.\"}\n").unwrap();
        assert_eq!(j.score, 4);
        assert_eq!(
            parse_judgement("Sure! {\"score\":5,\"reason\":\"ok\"} done")
                .unwrap()
                .score,
            5
        );
        assert!(parse_judgement("{\"score\": 9, \"reason\": \"x\"}").is_err());
        assert!(parse_judgement("no json").is_err());
        assert!(parse_judgement("{\"score\": \"high\"}").is_err());
    }
}
