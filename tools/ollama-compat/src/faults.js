// Fault injection for client tests. OFF unless OLLAMA_COMPAT_FAULTS or --faults is given;
// nothing here changes the faithful behaviour of a request no rule matches.
//
// Spec: rules separated by ";", each "PATH[:key=value]...":
//   error=STATUS      answer STATUS with {"error": MESSAGE} instead of handling the request
//   message=TEXT      the error text (default "injected fault")
//   cut=N             cut the connection after N NDJSON lines (streamed) or halfway through
//                     the body (not streamed), without finishing the response
//   delay=MS          wait MS milliseconds before handling the request
//   model=NAME        only requests whose JSON body names this model ("name:tag" or "name")
//   times=N           only the first N matching requests (default: every one)
// Example: OLLAMA_COMPAT_FAULTS="/api/chat:model=flaky:error=500:times=1;/api/version:delay=3000"

export function parseFaults(spec) {
  if (!spec) return [];
  return spec.split(";").map((s) => s.trim()).filter(Boolean).map((rule) => {
    const [path, ...kvs] = rule.split(":");
    const r = { path, remaining: Infinity };
    for (const kv of kvs) {
      const eq = kv.indexOf("=");
      const k = kv.slice(0, eq), v = kv.slice(eq + 1);
      if (k === "error") r.error = Number(v);
      else if (k === "message") r.message = v;
      else if (k === "cut") r.cut = Number(v);
      else if (k === "delay") r.delay = Number(v);
      else if (k === "model") r.model = v;
      else if (k === "times") r.remaining = Number(v);
      else throw new Error(`unknown fault option ${JSON.stringify(k)} in ${JSON.stringify(rule)}`);
    }
    return r;
  });
}

export class Faults {
  constructor(rules) { this.rules = rules; }

  get enabled() { return this.rules.length > 0; }

  // Returns the rule for this request (consuming one of its `times`), or null.
  take(path, model) {
    for (const r of this.rules) {
      if (r.path !== path || r.remaining <= 0) continue;
      if (r.model !== undefined && model !== r.model && model !== `${r.model}:latest` && `${model}:latest` !== r.model) continue;
      r.remaining--;
      return r;
    }
    return null;
  }

  // Applies `rule` before the handler runs. Returns true when the fault answered the request.
  async apply(rule, res) {
    if (rule.delay) {
      await new Promise((resolve) => setTimeout(resolve, rule.delay));
      // The client gave up while we waited: nothing to answer (Ollama cancels such requests too).
      if (res.destroyed || res.socket?.destroyed) return true;
    }
    if (rule.error) {
      const body = JSON.stringify({ error: rule.message ?? "injected fault" });
      res.writeHead(rule.error, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
      res.end(body);
      return true;
    }
    if (rule.cut !== undefined) cutAfter(res, rule.cut);
    return false;
  }
}

function cutAfter(res, lines) {
  const write = res.write.bind(res);
  const end = res.end.bind(res);
  let seen = 0;
  // Flush what was written, then close without finishing the HTTP response.
  const kill = () => {
    const s = res.socket;
    if (!s || s.destroyed) return;
    s.end();
    setTimeout(() => s.destroy(), 100).unref();
  };
  res.write = (chunk, ...rest) => {
    if (seen >= lines) { kill(); return false; }
    seen += String(chunk).split("\n").length - 1;
    const ok = write(chunk, ...rest);
    if (seen >= lines) setImmediate(kill);
    return ok;
  };
  res.end = (chunk, ...rest) => {
    if (chunk && typeof chunk !== "function" && seen < lines) {
      // Not streamed: send the headers and half of the body, then drop the connection.
      const buf = Buffer.from(chunk);
      if (!res.headersSent) res.removeHeader("Content-Length");
      write(buf.subarray(0, Math.floor(buf.length / 2)));
      setImmediate(kill);
      return res;
    }
    if (seen >= lines) { kill(); return res; }
    return end(chunk, ...rest);
  };
}
