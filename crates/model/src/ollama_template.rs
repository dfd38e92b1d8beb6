//! The Ollama side of a model's chat template: the Go `TEMPLATE`, the default `SYSTEM` prompt
//! and the `stop` parameters that make Ollama build the prompts the model was trained on. Both
//! the Modelfile written after training and the evaluator's `/api/create` take them from here.
//!
//! The Jinja template is recognised by what it renders on probe conversations, not by its
//! source text: a family matches when, for every probe, the Jinja output equals what Ollama
//! renders with that family's Go template (Ollama inserts `SYSTEM` as a first system message
//! when the conversation has none). An optional leading BOS text is allowed, since the runner
//! adds BOS itself. Two families are known, with Ollama's own templates and stop lists
//! (`template/chatml.gotmpl`, `template/llama3-instruct.gotmpl` and their `.json` parameters):
//! ChatML (`<|im_start|>role\n…<|im_end|>\n`: SmolLM2, Turkcell-LLM-7b-v1) and Llama 3
//! (`<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`). Any other template gets no
//! `TEMPLATE` (Ollama then picks a named template from the GGUF's `tokenizer.chat_template`).
//!
//! Stops are the family's, as Ollama's named template has them, then the EOS text when it is not
//! one of them (only the EOS text without a family). Both depend only on what a GGUF carries
//! (chat template, BOS and EOS), so the Modelfile, made from the HF folder, and the evaluator's
//! model, made from the GGUF, get the same ones; further EOS ids of `generation_config.json` are
//! not in the GGUF, and llama.cpp ends generation on its end-of-generation tokens itself.

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::tokenizer::TextTokenizer;

/// A chat-template family Ollama ships a named template for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateFamily {
    /// `<|im_start|>role\n…<|im_end|>\n`, Ollama's `chatml`.
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`, Ollama's `llama3-instruct`.
    Llama3,
}

impl TemplateFamily {
    /// Every known family, in the order they are tried.
    pub const ALL: [Self; 2] = [Self::ChatMl, Self::Llama3];

    /// The Go template: the `.Messages` branch of Ollama's named template. Every message goes
    /// through `.Messages`, system included, so `.System` is not printed a second time.
    pub fn go_template(self) -> &'static str {
        match self {
            Self::ChatMl => "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
            Self::Llama3 => "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
        }
    }

    /// The stop parameters of Ollama's named template.
    pub fn stops(self) -> &'static [&'static str] {
        match self {
            Self::ChatMl => &["<|im_start|>", "<|im_end|>"],
            Self::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        }
    }

    /// Text before a message's content.
    fn turn_start(self, role: &str) -> String {
        match self {
            Self::ChatMl => format!("<|im_start|>{role}\n"),
            Self::Llama3 => format!("<|start_header_id|>{role}<|end_header_id|>\n\n"),
        }
    }

    /// Text after a message's content.
    fn turn_end(self) -> &'static str {
        match self {
            Self::ChatMl => "<|im_end|>\n",
            Self::Llama3 => "<|eot_id|>",
        }
    }

    fn turn(self, message: &ChatMessage) -> String {
        format!(
            "{}{}{}",
            self.turn_start(&message.role),
            message.content,
            self.turn_end()
        )
    }

    /// What [`Self::go_template`] renders for `messages`, ending with the assistant's header.
    pub fn render(self, messages: &[ChatMessage]) -> String {
        let mut out: String = messages.iter().map(|m| self.turn(m)).collect();
        out.push_str(&self.turn_start("assistant"));
        out
    }
}

/// What Ollama needs besides the GGUF to prompt the model as its chat template does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaTemplate {
    /// The recognised family, `None` when the chat template is none of them (or absent).
    pub family: Option<TemplateFamily>,
    /// Go template for Ollama; `None` lets Ollama pick one from the GGUF.
    pub template: Option<String>,
    /// Default system prompt the Jinja template inserts when the conversation has none.
    pub system: Option<String>,
    /// Stop strings.
    pub stop: Vec<String>,
}

const PROBE_SYSTEM: &str = "PROBE-SYSTEM";
const PROBE_USER: &str = "PROBE-USER";
const PROBE_ASSISTANT: &str = "PROBE-ASSISTANT";

/// Conversations a template must render exactly like the family's Go template.
fn probes() -> [Vec<ChatMessage>; 4] {
    let system = || ChatMessage::new("system", PROBE_SYSTEM);
    let user = |n: u32| ChatMessage::new("user", format!("{PROBE_USER}-{n}"));
    let assistant = || ChatMessage::new("assistant", PROBE_ASSISTANT);
    [
        vec![user(1)],
        vec![system(), user(1)],
        vec![user(1), assistant(), user(2)],
        vec![system(), user(1), assistant(), user(2)],
    ]
}

impl OllamaTemplate {
    /// The mapping of `tokenizer`'s chat template.
    pub fn for_tokenizer(tokenizer: &TextTokenizer) -> Self {
        Self::from_chat_template(
            tokenizer.chat_template(),
            tokenizer.bos().map(|t| t.text.as_str()),
            tokenizer.eos().map(|t| t.text.as_str()),
        )
    }

    /// The mapping of `template`, whose renders may start with the `bos` text, for a model
    /// whose end-of-sequence token is `eos`.
    pub fn from_chat_template(
        template: Option<&ChatTemplate>,
        bos: Option<&str>,
        eos: Option<&str>,
    ) -> Self {
        let recognised = template.and_then(|t| {
            TemplateFamily::ALL
                .into_iter()
                .find_map(|family| recognise(t, family, bos).map(|system| (family, system)))
        });
        let family_stops = recognised.as_ref().map_or(&[][..], |(f, _)| f.stops());
        let mut stop: Vec<String> = family_stops.iter().map(|s| s.to_string()).collect();
        if let Some(e) = eos.filter(|e| !e.is_empty() && !family_stops.contains(e)) {
            stop.push(e.to_owned());
        }
        let (family, system) = recognised.unzip();
        Self {
            family,
            template: family.map(|f| f.go_template().to_owned()),
            system: system.flatten(),
            stop,
        }
    }
}

/// `Some(default system prompt)` when `template` renders every probe as `family` does.
fn recognise(
    template: &ChatTemplate,
    family: TemplateFamily,
    bos: Option<&str>,
) -> Option<Option<String>> {
    let render = |messages: &[ChatMessage]| template.render(messages, true).ok();
    let [first, ..] = probes();
    let system = default_system(&render(&first)?, family, &first, bos)?;
    for probe in probes() {
        let mut expected = probe.clone();
        if let (Some(s), Some(false)) = (&system, probe.first().map(|m| m.role == "system")) {
            expected.insert(0, ChatMessage::new("system", s.clone()));
        }
        if !matches_with_bos(&render(&probe)?, &family.render(&expected), bos) {
            return None;
        }
    }
    Some(system)
}

/// The system prompt `rendered` (the render of `messages`, which have none) starts with:
/// `Some(None)` when there is none, `None` when `rendered` is not `family`'s render at all.
fn default_system(
    rendered: &str,
    family: TemplateFamily,
    messages: &[ChatMessage],
    bos: Option<&str>,
) -> Option<Option<String>> {
    let tail = family.render(messages);
    let after_bos = bos
        .filter(|b| !b.is_empty())
        .and_then(|b| rendered.strip_prefix(b));
    for text in std::iter::once(rendered).chain(after_bos) {
        if text == tail {
            return Some(None);
        }
        let system = text
            .strip_suffix(&tail)
            .and_then(|head| head.strip_prefix(&family.turn_start("system")))
            .and_then(|head| head.strip_suffix(family.turn_end()));
        if let Some(s) = system {
            return Some(Some(s.to_owned()));
        }
    }
    None
}

/// `rendered` is `expected`, or `expected` after the BOS text.
fn matches_with_bos(rendered: &str, expected: &str, bos: Option<&str>) -> bool {
    rendered == expected
        || bos.is_some_and(|b| !b.is_empty() && rendered.strip_prefix(b) == Some(expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::CHATML_TEMPLATE;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    /// ChatML as HF documents it, with Turkcell-LLM-7b-v1's special tokens (`<|im_start|>` is
    /// its BOS, so every render starts with the BOS text).
    const TURKCELL: &str = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    /// Meta-Llama-3-8B-Instruct's template: BOS text first, contents trimmed.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    fn map(source: &str, bos: &str, eos: &str) -> OllamaTemplate {
        let t = ChatTemplate::new(source, bos, eos).unwrap();
        OllamaTemplate::from_chat_template(Some(&t), Some(bos), Some(eos))
    }

    #[test]
    fn chatml_templates_map_to_ollamas_chatml() {
        for (source, system) in [
            (CHATML_TEMPLATE, None),
            (TURKCELL, None),
            (
                SMOLLM2,
                Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
            ),
        ] {
            let m = map(source, "<|im_start|>", "<|im_end|>");
            assert_eq!(m.family, Some(TemplateFamily::ChatMl), "{source}");
            assert_eq!(
                m.template.as_deref(),
                Some(TemplateFamily::ChatMl.go_template())
            );
            assert_eq!(m.system.as_deref(), system, "{source}");
            assert_eq!(m.stop, ["<|im_start|>", "<|im_end|>"]);
        }
    }

    #[test]
    fn llama3_maps_to_ollamas_llama3_instruct() {
        let m = map(LLAMA3, "<|begin_of_text|>", "<|eot_id|>");
        assert_eq!(m.family, Some(TemplateFamily::Llama3));
        assert_eq!(
            m.template.as_deref(),
            Some(TemplateFamily::Llama3.go_template())
        );
        assert_eq!(m.system, None);
        assert_eq!(
            m.stop,
            ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        );
        // Llama 3 base models end on `<|end_of_text|>`: the EOS text follows the family's stops.
        let base = map(LLAMA3, "<|begin_of_text|>", "<|end_of_text|>");
        assert_eq!(
            base.stop.last().map(String::as_str),
            Some("<|end_of_text|>")
        );
        assert_eq!(base.stop.len(), 4);
    }

    /// Templates that use the ChatML tokens but render differently are not ChatML: Ollama's
    /// ChatML template would prompt them differently from training.
    #[test]
    fn lookalikes_and_missing_templates_get_no_template_and_the_eos_as_stop() {
        let space_after_role = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let drops_system = "{% for message in messages %}{% if message['role'] != 'system' %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        for source in [
            space_after_role,
            drops_system,
            "{{ messages[0]['content'] }}",
        ] {
            let m = map(source, "<s>", "</s>");
            assert_eq!(
                m,
                OllamaTemplate {
                    family: None,
                    template: None,
                    system: None,
                    stop: vec!["</s>".into()],
                },
                "{source}"
            );
        }
        let none = OllamaTemplate::from_chat_template(None, None, Some("</s>"));
        assert_eq!((none.template, none.stop), (None, vec!["</s>".to_owned()]));
        let bare = OllamaTemplate::from_chat_template(None, None, None);
        assert!(bare.stop.is_empty());
    }

    #[test]
    fn family_renders_follow_ollamas_message_loop() {
        let msgs = [
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "U"),
        ];
        assert_eq!(
            TemplateFamily::ChatMl.render(&msgs),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            TemplateFamily::Llama3.render(&msgs),
            "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }
}
