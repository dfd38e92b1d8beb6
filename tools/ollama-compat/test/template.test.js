// Go-template subset and Ollama's prompt assembly: `npm test` (no model needed).
import assert from "node:assert/strict";
import { test } from "node:test";

import { NAMED_TEMPLATES, TemplateError, detectNamedTemplate, parseTemplate, renderChat } from "../src/template.js";
import { parseFaults } from "../src/faults.js";
import { normalizeName } from "../src/store.js";

const msgs = [
  { role: "system", content: "Sen yardımcı bir asistansın." },
  { role: "user", content: "Merhaba" },
];

test("chatml named template renders .Messages", () => {
  assert.equal(
    renderChat(NAMED_TEMPLATES.chatml.template, msgs),
    "<|im_start|>system\nSen yardımcı bir asistansın.<|im_end|>\n<|im_start|>user\nMerhaba<|im_end|>\n<|im_start|>assistant\n",
  );
});

test("legacy .System/.Prompt/.Response templates run once per turn and cut the last after .Response", () => {
  const tpl = "{{ if .System }}S:{{ .System }}\n{{ end }}{{ if .Prompt }}U:{{ .Prompt }}\n{{ end }}A:{{ .Response }}\n";
  const out = renderChat(tpl, [...msgs, { role: "assistant", content: "Selam" }, { role: "user", content: "Nasılsın?" }]);
  assert.equal(out, "S:Sen yardımcı bir asistansın.\nU:Merhaba\nA:Selam\nU:Nasılsın?\nA:");
});

test("range with variables, len/slice, else if, trim markers", () => {
  const tpl = `{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{ if eq .Role "user" }}[U {{ .Content }}]{{ if $last }}<go>{{ end }}{{ else if eq .Role "system" }}[S]{{ else }}[?]{{ end }}
{{- end }}`;
  assert.equal(renderChat(tpl, msgs), "[S][U Merhaba]<go>");
});

test("consecutive messages of one role are merged like Ollama's collate", () => {
  const out = renderChat("{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}", [
    { role: "user", content: "a" }, { role: "user", content: "b" },
  ]);
  assert.equal(out, "user=a\n\nb;");
});

test("template errors are reported", () => {
  assert.throws(() => parseTemplate("{{ if .System }}x"), TemplateError);
  assert.throws(() => renderChat("{{ nosuchfunc 1 }}", msgs), TemplateError);
});

test("named template detection and names", () => {
  assert.equal(detectNamedTemplate("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"), "chatml");
  assert.equal(detectNamedTemplate("<|start_header_id|>"), "llama3-instruct");
  assert.equal(detectNamedTemplate("[INST]"), null);
  assert.equal(normalizeName("smol"), "smol:latest");
  assert.equal(normalizeName("a/b:q4"), "a/b:q4");
  assert.equal(normalizeName("bad name"), null);
});

test("fault specs parse", () => {
  const [r] = parseFaults("/api/chat:model=x:error=500:message=boom:times=2");
  assert.deepEqual(r, { path: "/api/chat", model: "x", error: 500, message: "boom", remaining: 2 });
  assert.throws(() => parseFaults("/api/chat:bogus=1"));
});
