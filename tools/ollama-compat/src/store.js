// On-disk state, laid out like Ollama's $OLLAMA_MODELS: blobs/sha256-<hex> and one manifest
// per model under manifests/ (ours is a small JSON file rather than an OCI manifest).
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";

const DIGEST_RE = /^sha256[:-][0-9a-fA-F]{64}$/;

export class StoreError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Ollama's model names: [host/][namespace/]model[:tag]; the tag defaults to "latest".
export function normalizeName(name) {
  if (typeof name !== "string" || name.trim() === "") return null;
  const n = name.trim();
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.\-/]*(:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?$/.test(n)) return null;
  return n.includes(":") ? n : `${n}:latest`;
}

export class Store {
  constructor(root) {
    this.root = root;
    this.blobsDir = path.join(root, "blobs");
    this.manifestsDir = path.join(root, "manifests");
  }

  async init() {
    await fs.mkdir(this.blobsDir, { recursive: true });
    await fs.mkdir(this.manifestsDir, { recursive: true });
  }

  // Mirrors manifest.BlobsPath: a bad digest format is an error ("invalid digest format").
  blobPath(digest) {
    if (!DIGEST_RE.test(digest)) throw new StoreError(400, "invalid digest format");
    return path.join(this.blobsDir, digest.replace(":", "-"));
  }

  async hasBlob(digest) {
    try { await fs.stat(this.blobPath(digest)); return true; } catch (e) { if (e instanceof StoreError) throw e; return false; }
  }

  // Streams the request body to a temporary file while hashing it, then stores it under the
  // digest it really has (as Ollama's NewLayer does) and reports whether that was the one asked for.
  async writeBlob(expected, body) {
    const tmp = path.join(this.blobsDir, `.tmp-${randomBytes(8).toString("hex")}`);
    const hash = createHash("sha256");
    let size = 0;
    body.on("data", (chunk) => { hash.update(chunk); size += chunk.length; });
    try {
      await pipeline(body, createWriteStream(tmp));
    } catch (e) {
      await fs.rm(tmp, { force: true });
      throw e;
    }
    const actual = `sha256:${hash.digest("hex")}`;
    await fs.rename(tmp, this.blobPath(actual));
    return { actual, size, matches: actual.toLowerCase() === expected.replace("-", ":").toLowerCase() };
  }

  async writeJsonBlob(value) {
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    const exists = await this.hasBlob(digest);
    if (!exists) await fs.writeFile(this.blobPath(digest), bytes);
    return { digest, size: bytes.length, exists };
  }

  manifestPath(name) {
    return path.join(this.manifestsDir, `${encodeURIComponent(name)}.json`);
  }

  async readManifest(name) {
    try { return JSON.parse(await fs.readFile(this.manifestPath(name), "utf8")); } catch { return null; }
  }

  async writeManifest(name, manifest) {
    const tmp = `${this.manifestPath(name)}.tmp`;
    await fs.writeFile(tmp, JSON.stringify(manifest, null, 1));
    await fs.rename(tmp, this.manifestPath(name));
  }

  async deleteManifest(name) {
    await fs.rm(this.manifestPath(name));
  }

  async listManifests() {
    const out = [];
    for (const f of await fs.readdir(this.manifestsDir)) {
      if (!f.endsWith(".json")) continue;
      const m = await this.readManifest(decodeURIComponent(f.slice(0, -5)));
      if (m) out.push(m);
    }
    return out;
  }
}
