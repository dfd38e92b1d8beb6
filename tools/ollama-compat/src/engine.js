// Inference through node-llama-cpp (llama.cpp): one loaded model at a time, requests served
// one after another (like Ollama with OLLAMA_NUM_PARALLEL=1), stop strings held back while
// they could still match, and Ollama's timing fields in nanoseconds.
import { LlamaGrammarEvaluationState, getLlama, readGgufFileInfo } from "node-llama-cpp";

const nowNs = () => process.hrtime.bigint();

// Defaults from Ollama's docs/modelfile.mdx (num_ctx: the < 24 GiB VRAM tier).
export const DEFAULT_OPTIONS = { temperature: 0.8, top_k: 40, top_p: 0.9, num_predict: -1, num_ctx: 4096 };

export async function readGgufInfo(file) {
  return readGgufFileInfo(file, { readTensorInfo: true });
}

export class Engine {
  constructor({ threads }) {
    this.threads = threads;
    this.llama = null;
    this.loaded = null; // { key (base + adapters + num_ctx), file, model, context, sequence }
    this.queue = Promise.resolve();
  }

  // Runs fn(exclusive access) after every earlier request finished.
  exclusive(fn) {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  // Loads `file` with the LoRA adapter files `adapters` applied (each at scale 1.0, as Ollama's
  // runner applies them) and a context of numCtx. The loaded model is keyed on base + adapters +
  // numCtx, like Ollama's scheduler reloads when a request's adapters differ: the same base is
  // kept and only its context recreated (LoRAs are set per context in llama.cpp). Returns the
  // load time in ns (0 when nothing had to be loaded).
  async ensureLoaded(file, adapters, numCtx) {
    const key = JSON.stringify({ file, adapters, numCtx });
    if (this.loaded && this.loaded.key === key) return 0n;
    const start = nowNs();
    let model = null;
    if (this.loaded) {
      const prev = this.loaded;
      this.loaded = null;
      await prev.context.dispose();
      if (prev.file === file) model = prev.model;
      else await prev.model.dispose();
    }
    this.llama ??= await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: this.threads });
    model ??= await this.llama.loadModel({ modelPath: file });
    let context;
    try {
      context = await model.createContext({
        contextSize: Math.min(numCtx, model.trainContextSize), sequences: 1, threads: this.threads,
        ...(adapters.length ? { lora: { adapters: adapters.map((filePath) => ({ filePath, scale: 1.0 })) } } : {}),
      });
    } catch (e) {
      await model.dispose(); // a LoRA llama.cpp refuses stays attached to the model otherwise
      throw Object.assign(new Error(`llama runner process has terminated: ${e.message}`), { status: 500 });
    }
    this.loaded = { key, file, model, context, sequence: context.getSequence() };
    return nowNs() - start;
  }

  // Generates a completion for `prompt` (already templated). onText(piece) gets text as it is
  // produced; returns Ollama's metrics plus the prompt/response tokens for "context".
  async generate({ file, adapters = [], prompt, options, format, onText, signal }) {
    return this.exclusive(async () => {
      const opts = { ...DEFAULT_OPTIONS, ...options };
      const loadNs = await this.ensureLoaded(file, adapters, opts.num_ctx);
      const { model, sequence } = this.loaded;
      await sequence.clearHistory();
      const promptTokens = model.tokenize(prompt, true);
      const ctxSize = sequence.context.contextSize;
      if (promptTokens.length >= ctxSize) {
        throw Object.assign(new Error(`input length (${promptTokens.length} tokens) exceeds the context length (${ctxSize} tokens)`), { status: 400 });
      }
      const maxNew = opts.num_predict < 0 ? ctxSize - promptTokens.length : Math.min(opts.num_predict, ctxSize - promptTokens.length);
      const stops = (Array.isArray(opts.stop) ? opts.stop : opts.stop ? [opts.stop] : []).filter((s) => s !== "");
      const evalOptions = { temperature: opts.temperature, topK: opts.top_k, topP: opts.top_p };
      if (opts.min_p !== undefined) evalOptions.minP = opts.min_p;
      if (opts.seed !== undefined && opts.seed >= 0) evalOptions.seed = opts.seed;
      if (opts.repeat_penalty !== undefined && opts.repeat_penalty !== 1) {
        evalOptions.repeatPenalty = { penalty: opts.repeat_penalty, lastTokens: opts.repeat_last_n ?? 64 };
      }

      if (format) {
        // Ollama's structured outputs: "json" or a JSON schema, enforced with a grammar.
        let grammar;
        try {
          grammar = format === "json" ? await this.llama.getGrammarFor("json") : await this.llama.createGrammarForJsonSchema(format);
        } catch (e) {
          throw Object.assign(new Error(`invalid JSON schema in format: ${e.message}`), { status: 400 });
        }
        evalOptions.grammarEvaluationState = new LlamaGrammarEvaluationState({ model, grammar });
      }

      const generated = [];
      let text = ""; // decoded so far
      let emitted = 0; // chars of `text` handed to onText
      let doneReason = "stop"; // EOG, a stop string, or the generator ending on its own
      const t0 = nowNs();
      let tFirst = null;
      if (maxNew <= 0) doneReason = "length";
      if (maxNew > 0) {
        for await (const token of sequence.evaluate(promptTokens, evalOptions)) {
          tFirst ??= nowNs();
          if (signal?.aborted) { doneReason = "stop"; break; }
          if (model.isEogToken(token)) { doneReason = "stop"; break; }
          generated.push(token);
          text = model.detokenize(generated, false);
          const hit = firstStop(text, stops);
          if (hit >= 0) {
            text = text.slice(0, hit);
            doneReason = "stop";
            break;
          }
          // A grammar lets whitespace follow the finished JSON value forever: end there.
          if (format && /\s$/.test(text) && isCompleteJson(text)) { text = text.trimEnd(); doneReason = "stop"; break; }
          // Hold back an incomplete UTF-8 sequence and any suffix that could start a stop string.
          let safe = text.endsWith("\uFFFD") ? text.length - 1 : text.length;
          safe = Math.min(safe, text.length - partialStopSuffix(text, stops));
          if (safe > emitted) { onText?.(text.slice(emitted, safe)); emitted = safe; }
          if (generated.length >= maxNew) { doneReason = "length"; break; }
        }
      }
      if (text.length > emitted) onText?.(text.slice(emitted));
      const tEnd = nowNs();
      tFirst ??= tEnd;
      return {
        text,
        doneReason,
        promptTokens,
        generatedTokens: generated,
        metrics: {
          load_duration: Number(loadNs),
          prompt_eval_count: promptTokens.length,
          prompt_eval_duration: Number(tFirst - t0),
          eval_count: generated.length,
          eval_duration: Number(tEnd - tFirst),
        },
      };
    });
  }
}

function isCompleteJson(text) {
  try { JSON.parse(text); return true; } catch { return false; }
}

function firstStop(text, stops) {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
function partialStopSuffix(text, stops) {
  let best = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) { best = k; break; }
    }
  }
  return best;
}
