// llama.cpp (node-llama-cpp 3.21.1) as an oracle for tb-model's tests.
//
// usage: node tools/oracles/llama_generate.mjs MODEL.gguf < request.json > response.json
// request:  {"texts": ["..."], "prompts": [[token ids]], "max_tokens": 32, "threads": 2}
// response: {"tokenized": [[ids] per text, special tokens parsed, no BOS added],
//            "continuations": [[greedy ids] per prompt], "seconds": [...]}
// Greedy means temperature 0 (argmax) with no repeat penalty; generation does not stop at EOS so
// both sides produce exactly max_tokens tokens.
import { getLlama } from "node-llama-cpp";

const modelPath = process.argv[2];
if (!modelPath) {
  console.error("usage: llama_generate.mjs MODEL.gguf < request.json");
  process.exit(2);
}
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const maxTokens = request.max_tokens ?? 32;

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 1024, threads: request.threads ?? 2, sequences: 1 });
const sequence = context.getSequence();

const tokenized = (request.texts ?? []).map((t) => Array.from(model.tokenize(t, true)));
const continuations = [];
const seconds = [];
for (const prompt of request.prompts ?? []) {
  await sequence.clearHistory();
  const out = [];
  const start = process.hrtime.bigint();
  for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    out.push(token);
    if (out.length >= maxTokens) break;
  }
  seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
  continuations.push(out);
}
process.stdout.write(JSON.stringify({ tokenized, continuations, seconds }) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
