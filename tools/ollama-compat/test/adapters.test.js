// /api/create with `adapters` (Ollama's ADAPTER): request validation, manifest, /api/show's
// modelfile, /api/tags and /api/delete. No model needed: the GGUFs are a few header bytes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { readGgufInfo } from "../src/engine.js";
import { ADAPTER_MEDIA_TYPE, createModel, listModels, showModel } from "../src/models.js";
import { Store } from "../src/store.js";

// A GGUF v3 file with no tensors and the given metadata (string, uint32 or float32 values).
function gguf(kv) {
  const parts = [];
  const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); parts.push(b); };
  const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, "utf8"); u64(b.length); parts.push(b); };
  parts.push(Buffer.from("GGUF", "latin1"));
  u32(3);
  u64(0); // tensors
  u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) {
    str(k);
    if (typeof v === "string") { u32(8); str(v); }
    else if (Number.isInteger(v)) { u32(4); u32(v); }
    else { u32(6); const b = Buffer.alloc(4); b.writeFloatLE(v); parts.push(b); }
  }
  return Buffer.concat(parts);
}

const BASE = gguf({ "general.architecture": "llama", "general.type": "model", "general.name": "tiny", "general.file_type": 1 });
const LORA = gguf({ "general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 32.0 });
const LORA2 = gguf({ "general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 16.0 });
const CVEC = gguf({ "general.architecture": "llama", "general.type": "adapter", "adapter.type": "cvec" });
const OTHER_ARCH = gguf({ "general.architecture": "qwen2", "general.type": "adapter", "adapter.type": "lora" });
const digestOf = (bytes) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const MISSING = `sha256:${"0".repeat(64)}`;

async function putBlob(store, bytes) {
  const digest = digestOf(bytes);
  await fs.writeFile(store.blobPath(digest), bytes);
  return digest;
}

// The `out` createModel streams to: statuses, and the error it answered with.
function collector() {
  const c = { statuses: [], error: null, ended: false };
  c.send = (o) => c.statuses.push(o.status);
  c.fail = (status, message) => { c.error = { status, message }; };
  c.end = () => { c.ended = true; };
  return c;
}

describe("create with adapters (no server)", () => {
  let dir, store, base, lora, lora2;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "oc-adapters-"));
    store = new Store(dir);
    await store.init();
    base = await putBlob(store, BASE);
    lora = await putBlob(store, LORA);
    lora2 = await putBlob(store, LORA2);
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  const create = async (body) => {
    const out = collector();
    await createModel(store, body, out, readGgufInfo);
    return out;
  };

  test("the tiny GGUFs parse like real ones", async () => {
    const md = (await readGgufInfo(store.blobPath(lora))).metadata;
    assert.equal(md.general.type, "adapter");
    assert.equal(md.adapter.type, "lora");
  });

  test("adapters without files or from: Ollama's 400", async () => {
    const out = await create({ model: "a", adapters: { "lora.gguf": lora } });
    assert.deepEqual(out.error, { status: 400, message: "neither 'from' or 'files' was specified" });
    assert.equal(await store.readManifest("a:latest"), null);
  });

  test("an unknown adapter digest is the open error (400 for adapters, as Ollama's create.go)", async () => {
    const out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": MISSING } });
    assert.equal(out.error.status, 400);
    assert.equal(out.error.message, `open ${store.blobPath(MISSING)}: no such file or directory`);
    assert.deepEqual(out.statuses, ["parsing GGUF", "parsing GGUF"]);
    assert.equal(await store.readManifest("a:latest"), null);
  });

  test("an empty or malformed adapter digest is 'invalid digest format'", async () => {
    for (const d of ["", "sha256:abc", "md5:00"]) {
      const out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": d } });
      assert.deepEqual(out.error, { status: 400, message: "invalid digest format" }, d);
    }
  });

  test("adapters of the wrong JSON type are refused like Go's decoder does", async () => {
    let out = await create({ model: "a", files: { "base.gguf": base }, adapters: [lora] });
    assert.deepEqual(out.error, { status: 400, message: "json: cannot unmarshal array into Go struct field CreateRequest.adapters of type map[string]string" });
    out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": 1 } });
    assert.deepEqual(out.error, { status: 400, message: "json: cannot unmarshal number into Go struct field CreateRequest.adapters of type string" });
    out = await create({ model: "a", files: { "base.gguf": base }, adapters: {} });
    assert.deepEqual(out.error, { status: 400, message: "unknown type" });
  });

  test("an adapter blob that is not GGUF", async () => {
    const junk = await putBlob(store, Buffer.from("not a gguf at all"));
    let out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": junk } });
    assert.deepEqual(out.error, { status: 400, message: "supplied file was not in GGUF format" });
    // without the .gguf suffix Ollama types the file by its magic bytes
    out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "adapter.bin": junk } });
    assert.deepEqual(out.error, { status: 400, message: "unknown type" });
  });

  test("an adapter GGUF that is not a LoRA for this base: llama.cpp's words", async () => {
    let out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": base } });
    assert.deepEqual(out.error, { status: 400, message: "expect general.type to be 'adapter', but got: model" });
    out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": await putBlob(store, CVEC) } });
    assert.deepEqual(out.error, { status: 400, message: "expect adapter.type to be 'lora', but got: cvec" });
    out = await create({ model: "a", files: { "base.gguf": base }, adapters: { "lora.gguf": await putBlob(store, OTHER_ARCH) } });
    assert.deepEqual(out.error, { status: 400, message: "model arch and LoRA arch mismatch" });
    assert.equal(await store.readManifest("a:latest"), null);
  });

  test("files + adapters: status lines, manifest, show's modelfile", async () => {
    const out = await create({ model: "tuned", files: { "base.gguf": base }, adapters: { "lora.gguf": lora } });
    assert.equal(out.error, null);
    assert.ok(out.ended);
    assert.deepEqual(out.statuses.slice(0, 4), ["parsing GGUF", "parsing GGUF", `using existing layer ${base}`, `using existing layer ${lora}`]);
    assert.match(out.statuses[4], /^(creating new|using existing) layer sha256:[0-9a-f]{64}$/);
    assert.deepEqual(out.statuses.slice(-2), ["writing manifest", "success"]);
    const m = await store.readManifest("tuned:latest");
    assert.equal(m.model_digest, base);
    assert.deepEqual(m.adapters, [{ digest: lora, media_type: ADAPTER_MEDIA_TYPE, size: LORA.length, file: "lora.gguf" }]);
    assert.equal(m.size, BASE.length + LORA.length);
    const shown = await showModel(store, { model: "tuned" }, readGgufInfo);
    const lines = shown.modelfile.split("\n");
    assert.ok(lines.includes(`FROM ${store.blobPath(base)}`), shown.modelfile);
    assert.ok(lines.includes(`ADAPTER ${store.blobPath(lora)}`), shown.modelfile);
    assert.ok(lines.indexOf(`ADAPTER ${store.blobPath(lora)}`) < lines.findIndex((l) => l.startsWith("TEMPLATE")));
    const tags = await listModels(store);
    assert.equal(tags.find((t) => t.name === "tuned:latest").size, BASE.length + LORA.length);
  });

  test("a model without adapters shows no ADAPTER line", async () => {
    const out = await create({ model: "plain", files: { "base.gguf": base } });
    assert.equal(out.error, null);
    assert.deepEqual((await store.readManifest("plain:latest")).adapters, []);
    const shown = await showModel(store, { model: "plain" }, readGgufInfo);
    assert.ok(!shown.modelfile.includes("ADAPTER"));
  });

  test("from + adapters: the base's adapters stay, the new ones follow", async () => {
    let out = await create({ model: "plain-plus", from: "plain", adapters: { "lora.gguf": lora } });
    assert.equal(out.error, null);
    assert.deepEqual((await store.readManifest("plain-plus:latest")).adapters.map((a) => a.digest), [lora]);
    out = await create({ model: "stacked", from: "tuned", adapters: { "b.gguf": lora2 } });
    assert.equal(out.error, null);
    const m = await store.readManifest("stacked:latest");
    assert.deepEqual(m.adapters.map((a) => a.digest), [lora, lora2]);
    assert.equal(m.size, BASE.length + LORA.length + LORA2.length);
    // from a model with an adapter, nothing added: it keeps the adapter
    out = await create({ model: "copy", from: "tuned" });
    assert.equal(out.error, null);
    assert.deepEqual((await store.readManifest("copy:latest")).adapters.map((a) => a.digest), [lora]);
  });

  test("two adapters in one request are refused as Ollama refuses them", async () => {
    const out = await create({ model: "two", files: { "base.gguf": base }, adapters: { "z.gguf": lora, "a.gguf": lora2 } });
    assert.deepEqual(out.error, { status: 400, message: "only one adapter is currently supported" });
    assert.equal(await store.readManifest("two:latest"), null);
  });
});

describe("adapters over HTTP", () => {
  let dir, child, url, base, lora;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "oc-http-"));
    const server = fileURLToPath(new URL("../src/server.js", import.meta.url));
    child = spawn(process.execPath, [server, "--port", "0", "--models-dir", dir, "--exit-on-stdin-close"], { stdio: ["pipe", "pipe", "inherit"] });
    const line = await new Promise((resolve, reject) => {
      let buf = "";
      child.stdout.on("data", (d) => { buf += d; if (buf.includes("\n")) resolve(buf.split("\n")[0]); });
      child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
    });
    url = `http://${JSON.parse(line).listening}`;
    const upload = async (bytes) => {
      const d = digestOf(bytes);
      const r = await fetch(`${url}/api/blobs/${d}`, { method: "POST", body: bytes });
      assert.equal(r.status, 201);
      return d;
    };
    base = await upload(BASE);
    lora = await upload(LORA);
  });
  after(async () => {
    child.stdin.end();
    await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
    await fs.rm(dir, { recursive: true, force: true });
  });

  const post = (p, body, method = "POST") => fetch(`${url}${p}`, { method, body: JSON.stringify(body) });

  test("streamed create lists the adapter layer; errors keep Ollama's status codes", async () => {
    let r = await post("/api/create", { model: "tuned", files: { "base.gguf": base }, adapters: { "lora.gguf": lora } });
    assert.equal(r.status, 200);
    const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.status === `using existing layer ${lora}`));
    assert.deepEqual(lines.at(-1), { status: "success" });

    r = await post("/api/create", { model: "x", adapters: { "lora.gguf": lora } });
    assert.equal(r.status, 400);
    assert.deepEqual(await r.json(), { error: "neither 'from' or 'files' was specified" });

    r = await post("/api/create", { model: "x", files: { "base.gguf": base }, adapters: { "lora.gguf": base }, stream: false });
    assert.equal(r.status, 400);
    assert.deepEqual(await r.json(), { error: "expect general.type to be 'adapter', but got: model" });

    r = await post("/api/create", { model: "x", files: { "base.gguf": base }, adapters: { "lora.gguf": MISSING }, stream: false });
    assert.equal(r.status, 400);
    assert.match((await r.json()).error, /^open .*sha256-0{64}: no such file or directory$/);

    // streamed, an error after the first status line is the last NDJSON line
    r = await post("/api/create", { model: "x", files: { "base.gguf": base }, adapters: { "lora.gguf": MISSING } });
    assert.equal(r.status, 200);
    const last = JSON.parse((await r.text()).trim().split("\n").at(-1));
    assert.match(last.error, /no such file or directory$/);
  });

  test("show, tags, and delete that never removes a blob another model uses", async () => {
    let r = await post("/api/create", { model: "plain", files: { "base.gguf": base }, stream: false });
    assert.equal(r.status, 200);
    r = await post("/api/show", { model: "tuned" });
    assert.equal(r.status, 200);
    assert.match((await r.json()).modelfile, /\nADAPTER \S+sha256-[0-9a-f]{64}\n/);
    r = await fetch(`${url}/api/tags`);
    const names = (await r.json()).models.map((m) => m.name).sort();
    assert.deepEqual(names, ["plain:latest", "tuned:latest"]);

    r = await post("/api/delete", { model: "tuned" }, "DELETE");
    assert.equal(r.status, 200);
    for (const d of [base, lora]) assert.equal((await fetch(`${url}/api/blobs/${d}`, { method: "HEAD" })).status, 200, d);
    r = await post("/api/show", { model: "plain" });
    assert.equal(r.status, 200);
    r = await post("/api/delete", { model: "tuned" }, "DELETE");
    assert.equal(r.status, 404);
    r = await fetch(`${url}/api/tags`);
    assert.deepEqual((await r.json()).models.map((m) => m.name), ["plain:latest"]);
  });
});
