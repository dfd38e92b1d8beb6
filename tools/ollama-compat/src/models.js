// /api/create, /api/show and /api/tags: models are a GGUF blob (plus any LoRA adapter GGUF
// blobs, Ollama's ADAPTER) with template, system prompt and parameters, stored as a manifest.
import { createHash } from "node:crypto";
import fs from "node:fs/promises";

import { DEFAULT_TEMPLATE, NAMED_TEMPLATES, detectNamedTemplate, parseTemplate } from "./template.js";
import { normalizeName } from "./store.js";

// llama.cpp's llama_ftype values (general.file_type) -> Ollama's quantization_level strings.
const FILE_TYPES = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
  11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
  17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
};

// Ollama's format.HumanNumber.
function humanNumber(n) {
  const f = (x, d) => (x === Math.floor(x) ? x.toFixed(0) : x.toFixed(d));
  if (n >= 1e9) return `${f(n / 1e9, 1)}B`;
  if (n >= 1e6) return `${f(n / 1e6, 2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}K`;
  return String(n);
}

function flatten(obj, prefix, out, verbose) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out, verbose);
    else out[key] = Array.isArray(v) && !verbose ? null : v;
  }
  return out;
}

const PARAM_TYPES = {
  stop: "strings", temperature: "number", top_k: "number", top_p: "number", min_p: "number",
  seed: "number", num_predict: "number", num_ctx: "number", repeat_penalty: "number",
  repeat_last_n: "number", num_keep: "number", typical_p: "number", presence_penalty: "number",
  frequency_penalty: "number", num_batch: "number", num_thread: "number", num_gpu: "number",
};

function checkParameters(params) {
  for (const [k, v] of Object.entries(params)) {
    const t = PARAM_TYPES[k];
    if (!t) return `unknown parameter '${k}'`;
    if (t === "number" && typeof v !== "number") return `invalid float value ${JSON.stringify(v)} for parameter '${k}'`;
    if (t === "strings" && !(typeof v === "string" || (Array.isArray(v) && v.every((s) => typeof s === "string")))) return `invalid value for parameter '${k}'`;
  }
  return null;
}

// Ollama's layer media type for a LoRA GGUF (server/create.go ggufLayers: general.type "adapter").
export const ADAPTER_MEDIA_TYPE = "application/vnd.ollama.image.adapter";

// encoding/json's text for a request field of the wrong JSON type.
function goType(v) {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  return typeof v === "boolean" ? "bool" : typeof v;
}

async function isGguf(file) {
  const fh = await fs.open(file, "r");
  try {
    const { buffer } = await fh.read(Buffer.alloc(4), 0, 4, 0);
    return buffer.toString("latin1") === "GGUF";
  } finally { await fh.close(); }
}

export async function createModel(store, body, out, readGgufInfo) {
  const given = body.model ?? body.name;
  const name = normalizeName(given);
  if (!name) return out.fail(400, "invalid model name");
  const files = body.files ?? null;
  for (const [file, digest] of Object.entries(files ?? {})) {
    if (file.startsWith("/") || file.split("/").includes("..")) return out.fail(400, "file path must be relative");
    if (!digest) return out.fail(400, "invalid digest format");
  }
  // CreateRequest.Adapters is a map[string]string like Files; "null" is the same as absent.
  const adapters = body.adapters ?? null;
  if (adapters !== null) {
    if (typeof adapters !== "object" || Array.isArray(adapters)) {
      return out.fail(400, `json: cannot unmarshal ${goType(adapters)} into Go struct field CreateRequest.adapters of type map[string]string`);
    }
    for (const digest of Object.values(adapters)) {
      if (typeof digest !== "string") return out.fail(400, `json: cannot unmarshal ${goType(digest)} into Go struct field CreateRequest.adapters of type string`);
      if (!digest) return out.fail(400, "invalid digest format");
    }
  }
  let base;
  if (body.from) {
    base = await store.readManifest(normalizeName(body.from) ?? "");
    if (!base) return out.fail(500, `pull model manifest: file does not exist`);
  } else if (files) {
    const names = Object.keys(files);
    if (names.length === 0) return out.fail(400, "no files provided to convert");
    if (names.some((f) => f.endsWith(".safetensors"))) return out.fail(400, "ollama-compat imports GGUF files only (safetensors conversion is not implemented)");
    if (!names.every((f) => f.endsWith(".gguf"))) return out.fail(400, "unknown type");
    if (names.length > 1) return out.fail(400, "ollama-compat supports a single GGUF file per model");
    const digest = files[names[0]];
    out.send({ status: "parsing GGUF" });
    let blobPath;
    try { blobPath = store.blobPath(digest); } catch (e) { return out.fail(400, e.message); }
    try { await fs.stat(blobPath); } catch { return out.fail(500, `open ${blobPath}: no such file or directory`); }
    if (!(await isGguf(blobPath))) return out.fail(400, "supplied file was not in GGUF format");
    let info;
    try { info = await readGgufInfo(blobPath); } catch (e) { return out.fail(500, e.message); }
    const md = info.metadata ?? {};
    const arch = md.general?.architecture ?? "unknown";
    const named = body.template ? null : detectNamedTemplate(md.tokenizer?.chat_template);
    base = {
      model_digest: digest.replace("-", ":"),
      adapters: [],
      size: (await fs.stat(blobPath)).size,
      template: named ? NAMED_TEMPLATES[named].template : DEFAULT_TEMPLATE,
      parameters: named ? { ...NAMED_TEMPLATES[named].parameters } : {},
      system: "",
      details: {
        parent_model: "",
        format: "gguf",
        family: arch,
        families: [arch],
        parameter_size: humanNumber(Number(info.tensorInfo?.reduce((s, t) => s + t.dimensions.reduce((a, d) => a * Number(d), 1), 0) ?? 0)),
        quantization_level: FILE_TYPES[md.general?.file_type] ?? "unknown",
      },
    };
  } else {
    return out.fail(400, "neither 'from' or 'files' was specified");
  }

  // Adapters after the base, as Ollama appends their layers to the base's (a `from` model keeps
  // its own adapters and gets the new ones after them).
  const adapterLayers = [...(base.adapters ?? [])];
  const adaptersSize = (layers) => layers.reduce((n, a) => n + a.size, 0);
  const modelSize = base.size - adaptersSize(adapterLayers); // a `from` manifest's size counts its adapters
  if (adapters !== null) {
    const added = await adapterLayersFrom(store, adapters, base, out, readGgufInfo);
    if (!added) return;
    adapterLayers.push(...added);
  }

  const template = body.template ?? base.template;
  try { parseTemplate(template); } catch (e) { return out.fail(400, `template error: ${e.message}`); }
  const parameters = { ...base.parameters, ...(body.parameters ?? {}) };
  const bad = checkParameters(parameters);
  if (bad) return out.fail(400, bad);

  const layer = async (value) => {
    const { digest, exists } = await store.writeJsonBlob(value);
    out.send({ status: `${exists ? "using existing" : "creating new"} layer ${digest}` });
  };
  out.send({ status: `using existing layer ${base.model_digest}` });
  for (const a of adapterLayers) out.send({ status: `using existing layer ${a.digest}` });
  await layer({ template });
  if (body.system ?? base.system) await layer({ system: body.system ?? base.system });
  if (Object.keys(parameters).length) await layer(parameters);
  out.send({ status: "writing manifest" });
  const manifest = {
    name, model_digest: base.model_digest, adapters: adapterLayers,
    size: modelSize + adaptersSize(adapterLayers), template,
    system: body.system ?? base.system, parameters, details: base.details,
    modified_at: new Date().toISOString(),
  };
  manifest.digest = createHash("sha256").update(JSON.stringify(manifest)).digest("hex");
  await store.writeManifest(name, manifest);
  out.send({ status: "success" });
  out.end();
}

// Validates the adapter blobs of a create request (Ollama's convertModelFromFiles with
// isAdapter, then llama.cpp's checks when it loads a LoRA, made at create time here) and returns
// their manifest layers, or undefined after answering the error (400, as Ollama does for adapters).
async function adapterLayersFrom(store, adapters, base, out, readGgufInfo) {
  const names = Object.keys(adapters).sort();
  if (names.length === 0) return void out.fail(400, "unknown type"); // detectModelTypeFromFiles finds no type
  // convertModelFromFiles: a GGUF adapter is one file (several come only by stacking with `from`).
  if (names.length > 1) return void out.fail(400, "only one adapter is currently supported");
  if (names.some((f) => f.endsWith(".safetensors"))) {
    return void out.fail(400, "ollama-compat imports GGUF adapters only (safetensors conversion is not implemented)");
  }
  const layers = [];
  for (const file of names) {
    const digest = adapters[file];
    let blobPath;
    try { blobPath = store.blobPath(digest); } catch (e) { return void out.fail(400, e.message); }
    // Ollama types a file without the .gguf suffix by its magic bytes; unreadable is "unknown type".
    if (!file.endsWith(".gguf")) {
      let gguf = false;
      try { gguf = await isGguf(blobPath); } catch { /* missing */ }
      if (!gguf) return void out.fail(400, "unknown type");
    }
    out.send({ status: "parsing GGUF" });
    let size;
    try { size = (await fs.stat(blobPath)).size; } catch { return void out.fail(400, `open ${blobPath}: no such file or directory`); }
    if (!(await isGguf(blobPath))) return void out.fail(400, "supplied file was not in GGUF format");
    let md;
    try { md = (await readGgufInfo(blobPath)).metadata ?? {}; } catch (e) { return void out.fail(400, e.message); }
    // llama.cpp's llama_adapter_lora_init checks, in its order and words.
    const generalType = md.general?.type ?? "";
    if (generalType !== "adapter") return void out.fail(400, `expect general.type to be 'adapter', but got: ${generalType}`);
    if ((md.general?.architecture ?? "") !== base.details.family) return void out.fail(400, "model arch and LoRA arch mismatch");
    const adapterType = md.adapter?.type ?? "";
    if (adapterType !== "lora") return void out.fail(400, `expect adapter.type to be 'lora', but got: ${adapterType}`);
    layers.push({ digest: digest.replace("-", ":"), media_type: ADAPTER_MEDIA_TYPE, size, file });
  }
  return layers;
}

function modelfile(m, store) {
  const lines = [
    `# Modelfile generated by "ollama show"`,
    `# To build a new Modelfile based on this, replace FROM with:`,
    `# FROM ${m.name}`,
    ``,
    `FROM ${store.blobPath(m.model_digest)}`,
  ];
  for (const a of m.adapters ?? []) lines.push(`ADAPTER ${store.blobPath(a.digest)}`);
  lines.push(`TEMPLATE """${m.template}"""`);
  if (m.system) lines.push(`SYSTEM """${m.system}"""`);
  for (const [k, v] of Object.entries(m.parameters)) for (const x of [].concat(v)) lines.push(`PARAMETER ${k} ${JSON.stringify(x)}`);
  return lines.join("\n") + "\n";
}

function parametersText(params) {
  const lines = [];
  for (const [k, v] of Object.entries(params)) for (const x of [].concat(v)) lines.push(`${k.padEnd(30)} ${typeof x === "string" ? JSON.stringify(x) : x}`);
  return lines.join("\n");
}

export async function showModel(store, body, readGgufInfo) {
  const given = body.model ?? body.name;
  if (!given) throw Object.assign(new Error("model is required"), { status: 400 });
  const name = normalizeName(given);
  const m = name && (await store.readManifest(name));
  if (!m) throw Object.assign(new Error(`model '${given}' not found`), { status: 404 });
  const info = await readGgufInfo(store.blobPath(m.model_digest));
  return {
    license: "",
    modelfile: modelfile(m, store),
    parameters: parametersText(m.parameters),
    template: m.template,
    ...(m.system ? { system: m.system } : {}),
    details: m.details,
    model_info: flatten(info.metadata ?? {}, "", {}, body.verbose === true),
    capabilities: ["completion"],
    modified_at: m.modified_at,
  };
}

export async function listModels(store) {
  const ms = await store.listManifests();
  return ms.sort((a, b) => b.modified_at.localeCompare(a.modified_at)).map((m) => ({
    name: m.name, model: m.name, modified_at: m.modified_at, size: m.size, digest: m.digest, details: m.details,
  }));
}
