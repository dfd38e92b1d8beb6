// llama.cpp speed on a GGUF, for comparison with tb-model's forward_speed example.
// usage: node tools/oracles/llama_speed.mjs MODEL.gguf [ROUNDS] [THREADS]
// Prompt processing: 4 sequences of 256 tokens (one batch of 1024); decode: 64 greedy tokens
// after a 32-token prompt, batch 1. Prints the best of ROUNDS.
import { getLlama } from "node-llama-cpp";

const [modelPath, roundsArg, threadsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 3);
const threads = Number(threadsArg ?? 2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const ids = Array.from({ length: 1024 }, (_, i) => 100 + ((i * 7919 + 13) % 1000));

let bestPrompt = Infinity;
let bestDecode = 0;
for (let r = 0; r < rounds; r++) {
  const context = await model.createContext({ contextSize: 2048, batchSize: 1024, threads, sequences: 4 });
  const seqs = [0, 1, 2, 3].map(() => context.getSequence());
  const t0 = process.hrtime.bigint();
  await Promise.all(seqs.map((s, k) => s.evaluateWithoutGeneratingNewTokens(ids.slice(k * 256, (k + 1) * 256))));
  bestPrompt = Math.min(bestPrompt, Number(process.hrtime.bigint() - t0) / 1e9);
  await context.dispose();

  const ctx1 = await model.createContext({ contextSize: 512, threads, sequences: 1 });
  const seq = ctx1.getSequence();
  let n = 0;
  let t1 = null;
  for await (const _ of seq.evaluate(ids.slice(0, 32), { temperature: 0 })) {
    if (t1 === null) t1 = process.hrtime.bigint();
    if (++n >= 64) break;
  }
  bestDecode = Math.max(bestDecode, (n - 1) / (Number(process.hrtime.bigint() - t1) / 1e9));
  await ctx1.dispose();
}
console.log(`llama.cpp ${threads} threads: prompt 4x256: ${(1024 / bestPrompt).toFixed(1)} tokens/s (best ${bestPrompt.toFixed(3)} s); decode batch 1: ${bestDecode.toFixed(1)} tokens/s`);
await model.dispose();
await llama.dispose();
