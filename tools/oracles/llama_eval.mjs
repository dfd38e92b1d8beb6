// llama.cpp (node-llama-cpp 3.21.1) as an oracle for tb-gguf's export tests: loads a GGUF
// (optionally with a LoRA adapter GGUF applied at scale 1), tokenizes, generates greedily and
// scores token sequences (teacher forcing).
//
// usage: node tools/oracles/llama_eval.mjs MODEL.gguf < request.json > response.json
// request:  {"texts": ["..."],            tokenize each (special tokens parsed, BOS not added)
//            "prompts": [[ids]],          greedy continuation of each (temperature 0)
//            "max_tokens": 16,
//            "score": [[ids]],            per position i >= 1: top-k next-token probabilities
//            "topk": 8,                   after ids[0..i] (temperature 1; node-llama-cpp reports
//                                         them after its default sampler chain, i.e. top-k
//                                         renormalised: compare ratios, not absolute values)
//            "lora": "ADAPTER.gguf",      optional
//            "threads": 2}
// response: {"tokenized": [[ids]], "continuations": [[ids]],
//            "scores": [[ [[token, prob], ...] per position ]]}
import { getLlama } from "node-llama-cpp";

const modelPath = process.argv[2];
if (!modelPath) {
  console.error("usage: llama_eval.mjs MODEL.gguf < request.json");
  process.exit(2);
}
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const maxTokens = request.max_tokens ?? 16;
const topk = request.topk ?? 8;

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const contextOptions = { contextSize: 256, threads: request.threads ?? 2, sequences: 1 };
if (request.lora) contextOptions.lora = { adapters: [{ filePath: request.lora, scale: 1 }] };
const context = await model.createContext(contextOptions);
const sequence = context.getSequence();

const tokenized = (request.texts ?? []).map((t) => Array.from(model.tokenize(t, true)));
const continuations = [];
for (const prompt of request.prompts ?? []) {
  await sequence.clearHistory();
  const out = [];
  for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    out.push(token);
    if (out.length >= maxTokens) break;
  }
  continuations.push(out);
}
const scores = [];
for (const ids of request.score ?? []) {
  await sequence.clearHistory();
  const input = ids.map((t) => [t, { generateNext: { probabilities: true, options: { temperature: 1 } } }]);
  const res = await sequence.controlledEvaluate(input);
  const rows = [];
  for (let i = 0; i < ids.length; i++) {
    const probs = res[i]?.next?.probabilities;
    if (!probs) throw new Error(`no probabilities at position ${i}`);
    rows.push(Array.from(probs.entries()).sort((a, b) => b[1] - a[1]).slice(0, topk));
  }
  scores.push(rows);
}
process.stdout.write(JSON.stringify({ tokenized, continuations, scores }) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
