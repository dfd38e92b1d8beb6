#!/usr/bin/env node
// ollama-compat: a subset of Ollama's HTTP API with Ollama's JSON shapes, status codes and
// NDJSON streaming, running llama.cpp through node-llama-cpp. See ../README.md.
//
//   node src/server.js [--host 127.0.0.1] [--port 11434] [--models-dir DIR] [--threads N]
//                      [--faults SPEC] [--exit-on-stdin-close]
// OLLAMA_HOST (host[:port]), OLLAMA_MODELS and OLLAMA_COMPAT_FAULTS are read when the flags
// are absent. --port 0 picks a free port; the first stdout line is {"listening":"host:port"}.
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { Engine, readGgufInfo } from "./engine.js";
import { Faults, parseFaults } from "./faults.js";
import { createModel, showModel, listModels } from "./models.js";
import { renderChat } from "./template.js";
import { Store, StoreError, normalizeName } from "./store.js";

export const VERSION = "0.12.11-compat";

const { values: args } = parseArgs({
  options: {
    host: { type: "string" },
    port: { type: "string" },
    "models-dir": { type: "string" },
    threads: { type: "string" },
    faults: { type: "string" },
    "exit-on-stdin-close": { type: "boolean", default: false },
  },
});

function bindAddress() {
  // OLLAMA_HOST as the Ollama server reads it: [scheme://]host[:port], default 127.0.0.1:11434.
  const env = (process.env.OLLAMA_HOST ?? "").trim().replace(/^[a-z]+:\/\//, "").split("/")[0];
  let host = "127.0.0.1", port = 11434;
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(env);
  if (m && m[1]) host = m[1].replace(/^\[|\]$/g, "");
  if (m && m[2]) port = Number(m[2]);
  if (args.host) host = args.host;
  if (args.port !== undefined) port = Number(args.port);
  return { host, port };
}

const store = new Store(args["models-dir"] ?? process.env.OLLAMA_MODELS ?? path.join(os.homedir(), ".ollama-compat", "models"));
const engine = new Engine({ threads: Number(args.threads ?? Math.max(1, Math.min(4, os.availableParallelism?.() ?? 2))) });
const faults = new Faults(parseFaults(args.faults ?? process.env.OLLAMA_COMPAT_FAULTS));

// ---- HTTP helpers ----
class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function sendJson(res, status, value) {
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.end(JSON.stringify(value));
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw new HttpError(400, "missing request body");
  try { return JSON.parse(text); } catch (e) { throw new HttpError(400, e.message); }
}

// Ollama's stream/no-stream switch: NDJSON unless "stream": false, in which case only the
// last object is sent (waitForStream). Errors before any output get a status code; later ones
// become an {"error"} line (streamResponse).
function streamer(res, stream) {
  let started = false;
  let latest = null;
  const start = () => {
    if (started) return;
    res.statusCode = 200;
    res.setHeader("Content-Type", "application/x-ndjson");
    started = true;
  };
  return {
    stream,
    send(obj) {
      if (!stream) { latest = obj; return; }
      start();
      res.write(JSON.stringify(obj) + "\n");
    },
    fail(status, message) {
      if (!started) return sendJson(res, status, { error: message });
      res.end(JSON.stringify({ error: message }) + "\n");
    },
    end() {
      if (!stream) return sendJson(res, 200, latest ?? {});
      start();
      res.end();
    },
  };
}

const createdAt = () => new Date().toISOString();

// ---- inference ----
async function loadForInference(modelName) {
  const name = normalizeName(modelName);
  if (!name) throw new HttpError(400, "model is required");
  const m = await store.readManifest(name);
  if (!m) throw new HttpError(404, `model '${modelName}' not found`);
  return m;
}

function mergedOptions(manifest, reqOptions) {
  const opts = { ...(manifest.parameters ?? {}), ...(reqOptions ?? {}) };
  for (const k of ["temperature", "top_k", "top_p", "min_p", "seed", "num_predict", "num_ctx", "repeat_penalty", "repeat_last_n"]) {
    if (opts[k] !== undefined && typeof opts[k] !== "number") throw new HttpError(400, `option "${k}" must be a number`);
  }
  return opts;
}

async function runInference(req, res, body, kind) {
  const stream = body.stream !== false;
  const manifest = await loadForInference(body.model);
  const options = mergedOptions(manifest, body.options);
  if (Array.isArray(body.tools) && body.tools.length) throw new HttpError(400, `"${body.model}" does not support tools`);
  if (body.think === true) throw new HttpError(400, `"${body.model}" does not support thinking`);
  if (body.top_logprobs !== undefined && (body.top_logprobs < 0 || body.top_logprobs > 20)) throw new HttpError(400, "top_logprobs must be between 0 and 20");
  // Not implemented here; refuse rather than silently answer differently from Ollama.
  if (body.format !== undefined && body.format !== "" && body.format !== null && body.format !== "json" && typeof body.format !== "object") {
    throw new HttpError(400, `invalid format: ${JSON.stringify(body.format)}`);
  }
  if (body.logprobs) throw new HttpError(501, "ollama-compat does not implement logprobs");
  if (Array.isArray(body.images) && body.images.length) throw new HttpError(501, "ollama-compat does not implement images");
  const unload = body.keep_alive === 0 || body.keep_alive === "0" || body.keep_alive === "0s";
  let prompt;
  if (kind === "chat") {
    if (!Array.isArray(body.messages)) body.messages = [];
    if (body.messages.length === 0) {
      return sendJson(res, 200, { model: body.model, created_at: createdAt(), message: { role: "assistant", content: "" }, done_reason: unload ? "unload" : "load", done: true });
    }
    let msgs = body.messages.map((m) => ({ role: String(m.role ?? ""), content: String(m.content ?? "") }));
    if (msgs[0].role !== "system" && manifest.system) msgs = [{ role: "system", content: manifest.system }, ...msgs];
    prompt = renderChat(manifest.template, msgs);
  } else {
    if (body.prompt === undefined || body.prompt === "") {
      return sendJson(res, 200, { model: body.model, created_at: createdAt(), response: "", done: true, done_reason: unload ? "unload" : "load" });
    }
    if (body.raw) prompt = String(body.prompt);
    else {
      const msgs = [];
      const system = body.system ?? manifest.system;
      if (system) msgs.push({ role: "system", content: system });
      msgs.push({ role: "user", content: String(body.prompt) });
      prompt = renderChat(body.template || manifest.template, msgs);
    }
  }
  const out = streamer(res, stream);
  const t0 = process.hrtime.bigint();
  const piece = (text) => (kind === "chat"
    ? { model: body.model, created_at: createdAt(), message: { role: "assistant", content: text }, done: false }
    : { model: body.model, created_at: createdAt(), response: text, done: false });
  const ac = new AbortController();
  res.on("close", () => { if (!res.writableFinished) ac.abort(); });
  let result;
  try {
    result = await engine.generate({
      file: store.blobPath(manifest.model_digest),
      adapters: (manifest.adapters ?? []).map((a) => store.blobPath(a.digest)),
      prompt, options, signal: ac.signal, format: body.format || undefined,
      onText: stream ? (t) => out.send(piece(t)) : undefined,
    });
  } catch (e) {
    return out.fail(e.status ?? 500, e.message);
  }
  const final = {
    ...piece(stream ? "" : result.text),
    done: true,
    done_reason: result.doneReason,
    ...(kind === "generate" && !body.raw ? { context: [...result.promptTokens, ...result.generatedTokens] } : {}),
    total_duration: Number(process.hrtime.bigint() - t0),
    ...result.metrics,
  };
  if (!stream) return sendJson(res, 200, final);
  out.send(final);
  out.end();
}

// ---- routes ----
async function handle(req, res) {
  const url = new URL(req.url, "http://localhost");
  const p = url.pathname;
  const route = `${req.method} ${p.startsWith("/api/blobs/") ? "/api/blobs/:digest" : p}`;
  let body = null;
  const needsBody = ["POST /api/create", "POST /api/chat", "POST /api/generate", "POST /api/show", "DELETE /api/delete"].includes(route);
  if (needsBody) body = await readJson(req);

  if (faults.enabled) {
    const rule = faults.take(p, body?.model ?? body?.name);
    if (rule && (await faults.apply(rule, res))) return;
  }

  switch (route) {
    case "GET /":
    case "HEAD /":
      res.setHeader("Content-Type", "text/plain; charset=utf-8");
      return res.end("Ollama is running");
    case "GET /api/version":
    case "HEAD /api/version":
      return sendJson(res, 200, { version: VERSION });
    case "GET /api/tags":
    case "HEAD /api/tags":
      return sendJson(res, 200, { models: await listModels(store) });
    case "HEAD /api/blobs/:digest": {
      const digest = decodeURIComponent(p.slice("/api/blobs/".length));
      if (await store.hasBlob(digest)) { res.statusCode = 200; return res.end(); }
      return sendJson(res, 404, { error: `blob "${digest}" not found` });
    }
    case "POST /api/blobs/:digest": {
      const digest = decodeURIComponent(p.slice("/api/blobs/".length));
      store.blobPath(digest); // validates the format (400)
      if (await store.hasBlob(digest)) { req.resume(); res.statusCode = 200; return res.end(); }
      const { actual, matches } = await store.writeBlob(digest, req);
      if (!matches) return sendJson(res, 400, { error: `digest mismatch, expected "${digest}", got "${actual}"` });
      res.statusCode = 201;
      return res.end();
    }
    case "POST /api/create": {
      const out = streamer(res, body.stream !== false);
      return createModel(store, body, out, readGgufInfo);
    }
    case "POST /api/chat":
      return runInference(req, res, body, "chat");
    case "POST /api/generate":
      return runInference(req, res, body, "generate");
    case "POST /api/show":
      return sendJson(res, 200, await showModel(store, body, readGgufInfo));
    case "DELETE /api/delete": {
      const given = body.model ?? body.name ?? "";
      const name = normalizeName(given);
      if (!name) throw new HttpError(400, `name "${given}" is invalid`);
      if (!(await store.readManifest(name))) throw new HttpError(404, `model '${given}' not found`);
      await store.deleteManifest(name);
      res.statusCode = 200;
      return res.end();
    }
    default:
      res.statusCode = 404;
      res.setHeader("Content-Type", "text/plain");
      return res.end("404 page not found");
  }
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    const status = e instanceof HttpError || e instanceof StoreError ? e.status : e.status ?? 500;
    if (!res.headersSent) sendJson(res, status, { error: e.message });
    else res.end();
  });
});
server.keepAliveTimeout = 5000;
server.requestTimeout = 0;

await store.init();
const { host, port } = bindAddress();
server.listen(port, host, () => {
  const a = server.address();
  const hostPort = a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  process.stdout.write(JSON.stringify({ listening: hostPort, faults: faults.enabled }) + "\n");
});
if (args["exit-on-stdin-close"]) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
