// A subset of Go's text/template, enough for Ollama's chat templates (ChatML, Llama 2/3,
// Mistral, Zephyr...): text, {{- trim -}} markers, comments, fields (.System, .Messages,
// $.Tools, $var.Content), if / else if / else, range (with $i, $x :=), with, variable
// declarations, parenthesised calls and the builtins eq ne lt le gt ge and or not len index
// slice print printf(%s %d %v) json. Output is not escaped, like text/template.
//
// Also: Ollama's legacy execution for templates without .Messages (one execution per
// system/user/assistant turn, the last cut after {{ .Response }}), and detection of a
// named template from a GGUF's tokenizer.chat_template.

export class TemplateError extends Error {}

// ---- lexing the template into text and actions ----
function splitActions(src) {
  const parts = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf("{{", i);
    if (open < 0) { parts.push({ text: src.slice(i) }); break; }
    parts.push({ text: src.slice(i, open) });
    const close = src.indexOf("}}", open + 2);
    if (close < 0) throw new TemplateError("template: unclosed action");
    let inner = src.slice(open + 2, close);
    let trimLeft = false, trimRight = false;
    if (/^-\s/.test(inner)) { trimLeft = true; inner = inner.slice(1); }
    if (/\s-$/.test(inner)) { trimRight = true; inner = inner.slice(0, -1); }
    parts.push({ action: inner.trim(), trimLeft, trimRight });
    i = close + 2;
  }
  for (let k = 0; k < parts.length; k++) {
    const p = parts[k];
    if (p.action === undefined) continue;
    if (p.trimLeft && k > 0 && parts[k - 1].text !== undefined) parts[k - 1].text = parts[k - 1].text.replace(/\s+$/, "");
    if (p.trimRight && k + 1 < parts.length && parts[k + 1].text !== undefined) parts[k + 1].text = parts[k + 1].text.replace(/^\s+/, "");
  }
  return parts.filter((p) => p.action !== undefined || p.text !== "");
}

// ---- lexing one action into tokens ----
function lexAction(s) {
  const toks = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === "(" || c === ")" || c === "," || c === "|") { toks.push({ t: c }); i++; continue; }
    if (s.startsWith(":=", i)) { toks.push({ t: ":=" }); i += 2; continue; }
    if (c === "=") { toks.push({ t: "=" }); i++; continue; }
    if (c === '"') {
      let j = i + 1;
      while (j < s.length && s[j] !== '"') j += s[j] === "\\" ? 2 : 1;
      toks.push({ t: "lit", v: JSON.parse(s.slice(i, j + 1)) });
      i = j + 1; continue;
    }
    if (c === "`") {
      const j = s.indexOf("`", i + 1);
      toks.push({ t: "lit", v: s.slice(i + 1, j) });
      i = j + 1; continue;
    }
    const m = /^(-?\d+(\.\d+)?|true|false|nil|\$[A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*|(\.[A-Za-z0-9_]+)+|\.|[A-Za-z_][A-Za-z0-9_]*)/.exec(s.slice(i));
    if (!m) throw new TemplateError(`template: unexpected ${JSON.stringify(s.slice(i))}`);
    const w = m[0];
    if (/^-?\d/.test(w)) toks.push({ t: "lit", v: Number(w) });
    else if (w === "true" || w === "false") toks.push({ t: "lit", v: w === "true" });
    else if (w === "nil") toks.push({ t: "lit", v: null });
    else if (w.startsWith("$")) { const [name, ...path] = w.split("."); toks.push({ t: "var", name, path }); }
    else if (w.startsWith(".")) toks.push({ t: "field", path: w === "." ? [] : w.slice(1).split(".") });
    else toks.push({ t: "ident", v: w });
    i += w.length;
  }
  return toks;
}

// pipeline := command ('|' command)* ; command := operand+
function parsePipeline(toks, pos = { i: 0 }, stopAt = null) {
  const cmds = [];
  let cur = [];
  while (pos.i < toks.length) {
    const tk = toks[pos.i];
    if (tk.t === stopAt) break;
    pos.i++;
    if (tk.t === "|") { cmds.push(cur); cur = []; continue; }
    if (tk.t === "(") { cur.push({ t: "pipe", cmds: parsePipeline(toks, pos, ")").cmds }); pos.i++; continue; }
    cur.push(tk);
  }
  cmds.push(cur);
  return { t: "pipe", cmds };
}

function parseActionExpr(src) {
  const toks = lexAction(src);
  // declarations: $x := pipe, $i, $x := pipe (range only)
  const declIdx = toks.findIndex((t) => t.t === ":=" || t.t === "=");
  if (declIdx > 0) {
    const vars = toks.slice(0, declIdx).filter((t) => t.t === "var").map((t) => t.name);
    return { vars, pipe: parsePipeline(toks.slice(declIdx + 1)) };
  }
  return { vars: [], pipe: parsePipeline(toks) };
}

// ---- parsing into a tree ----
export function parseTemplate(src) {
  const parts = splitActions(src);
  let k = 0;
  function parseList(terminators) {
    const nodes = [];
    while (k < parts.length) {
      const p = parts[k];
      if (p.text !== undefined) { nodes.push({ t: "text", v: p.text }); k++; continue; }
      const a = p.action;
      if (a.startsWith("/*")) { k++; continue; }
      const kw = a.split(/\s+/)[0];
      if (terminators.includes(kw)) return { nodes, end: a };
      k++;
      if (kw === "if" || kw === "with" || kw === "range") {
        nodes.push(parseBlock(kw, a.slice(kw.length)));
      } else if (kw === "end" || kw === "else") {
        throw new TemplateError(`template: unexpected {{${a}}}`);
      } else {
        const e = parseActionExpr(a);
        nodes.push(e.vars.length ? { t: "assign", vars: e.vars, pipe: e.pipe } : { t: "print", pipe: e.pipe });
      }
    }
    if (terminators.length) throw new TemplateError("template: unexpected EOF");
    return { nodes, end: null };
  }
  function parseBlock(kw, rest) {
    const head = parseActionExpr(rest);
    const body = parseList(["else", "end"]);
    let elseNodes = [];
    let end = body.end;
    k++;
    if (end.startsWith("else")) {
      const elseRest = end.slice(4).trim();
      if (elseRest.startsWith("if ") || elseRest.startsWith("with ")) {
        const kw2 = elseRest.split(/\s+/)[0];
        elseNodes = [parseBlock(kw2, elseRest.slice(kw2.length))];
        return { t: kw, head, body: body.nodes, elseNodes };
      }
      const eb = parseList(["end"]);
      k++;
      elseNodes = eb.nodes;
    }
    return { t: kw, head, body: body.nodes, elseNodes };
  }
  return parseList([]).nodes;
}

// ---- evaluation ----
function truthy(v) {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v).length > 0;
  return true;
}

function fieldOf(v, path) {
  for (const f of path) {
    if (v === null || v === undefined) return undefined;
    v = v[f];
  }
  return v;
}

function fmt(v) {
  if (v === null || v === undefined) return "<no value>";
  if (Array.isArray(v)) return `[${v.map(fmt).join(" ")}]`;
  if (typeof v === "object") return `map[${Object.entries(v).map(([k, x]) => `${k}:${fmt(x)}`).join(" ")}]`;
  return String(v);
}

const builtins = {
  eq: (a, ...bs) => bs.some((b) => a === b),
  ne: (a, b) => a !== b,
  lt: (a, b) => a < b, le: (a, b) => a <= b, gt: (a, b) => a > b, ge: (a, b) => a >= b,
  and: (...xs) => { for (const x of xs) if (!truthy(x)) return x; return xs[xs.length - 1]; },
  or: (...xs) => { for (const x of xs) if (truthy(x)) return x; return xs[xs.length - 1]; },
  not: (x) => !truthy(x),
  len: (x) => (x === null || x === undefined ? 0 : Array.isArray(x) || typeof x === "string" ? x.length : Object.keys(x).length),
  index: (x, ...ks) => ks.reduce((v, k) => (v == null ? undefined : v[k]), x),
  slice: (x, a = 0, b) => x.slice(a, b),
  print: (...xs) => xs.map(fmt).join(""),
  printf: (f, ...xs) => { let i = 0; return f.replace(/%[sdvq%]/g, (m) => (m === "%%" ? "%" : m === "%q" ? JSON.stringify(xs[i++]) : fmt(xs[i++]))); },
  json: (x) => JSON.stringify(x),
};

function evalOperand(tk, scope) {
  switch (tk.t) {
    case "lit": return tk.v;
    case "field": return fieldOf(scope.dot, tk.path);
    case "var": {
      for (let s = scope; s; s = s.parent) if (tk.name in s.vars) return fieldOf(s.vars[tk.name], tk.path);
      throw new TemplateError(`template: undefined variable "${tk.name}"`);
    }
    case "pipe": return evalPipe(tk, scope);
    case "ident": {
      const f = builtins[tk.v];
      if (!f) throw new TemplateError(`template: function "${tk.v}" not defined`);
      return f();
    }
    default: throw new TemplateError(`template: unexpected token ${tk.t}`);
  }
}

function evalPipe(pipe, scope) {
  let prev;
  let first = true;
  for (const cmd of pipe.cmds) {
    if (cmd.length === 0) throw new TemplateError("template: empty command");
    const [head, ...rest] = cmd;
    const args = rest.map((a) => evalOperand(a, scope));
    if (!first) args.push(prev);
    if (head.t === "ident") {
      const f = builtins[head.v];
      if (!f) throw new TemplateError(`template: function "${head.v}" not defined`);
      prev = f(...args);
    } else {
      if (args.length) throw new TemplateError("template: can't give argument to non-function");
      prev = evalOperand(head, scope);
    }
    first = false;
  }
  return prev;
}

function execNodes(nodes, scope, out) {
  for (const n of nodes) {
    switch (n.t) {
      case "text": out.push(n.v); break;
      case "print": {
        const v = evalPipe(n.pipe, scope);
        out.push(v === undefined || v === null ? "" : fmt(v));
        break;
      }
      case "assign": scope.vars[n.vars[0]] = evalPipe(n.pipe, scope); break;
      case "if": case "with": {
        const v = evalPipe(n.head.pipe, scope);
        if (truthy(v)) {
          const inner = { dot: n.t === "with" ? v : scope.dot, vars: {}, parent: scope };
          if (n.head.vars.length) inner.vars[n.head.vars[0]] = v;
          execNodes(n.body, inner, out);
        } else execNodes(n.elseNodes, { dot: scope.dot, vars: {}, parent: scope }, out);
        break;
      }
      case "range": {
        const v = evalPipe(n.head.pipe, scope);
        const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : v && typeof v === "object" ? Object.entries(v).sort() : [];
        if (entries.length === 0) { execNodes(n.elseNodes, { dot: scope.dot, vars: {}, parent: scope }, out); break; }
        for (const [key, val] of entries) {
          const inner = { dot: val, vars: {}, parent: scope };
          if (n.head.vars.length === 1) inner.vars[n.head.vars[0]] = val;
          if (n.head.vars.length === 2) { inner.vars[n.head.vars[0]] = key; inner.vars[n.head.vars[1]] = val; }
          execNodes(n.body, inner, out);
        }
        break;
      }
      default: throw new TemplateError(`template: unknown node ${n.t}`);
    }
  }
}

export function execute(nodes, data) {
  const out = [];
  execNodes(nodes, { dot: data, vars: { $: data }, parent: null }, out);
  return out.join("");
}

function usesVar(nodes, name) {
  const walkPipe = (p) => p.cmds.some((c) => c.some((tk) => (tk.t === "field" && tk.path[0] === name) || (tk.t === "var" && tk.path[0] === name) || (tk.t === "pipe" && walkPipe(tk))));
  return nodes.some((n) => (n.pipe && walkPipe(n.pipe)) || (n.head && walkPipe(n.head.pipe)) || (n.body && usesVar(n.body, name)) || (n.elseNodes && usesVar(n.elseNodes, name)));
}

// Drops every node after the first {{ .Response }} (Ollama cuts the last legacy turn there).
function cutAfterResponse(nodes) {
  const out = [];
  for (const n of nodes) {
    if (n.t === "print" && usesVar([n], "Response")) return { nodes: out, cut: true };
    if (n.body) {
      const b = cutAfterResponse(n.body);
      const e = cutAfterResponse(n.elseNodes);
      out.push({ ...n, body: b.nodes, elseNodes: e.nodes });
      if (b.cut || e.cut) return { nodes: out, cut: true };
      continue;
    }
    out.push(n);
  }
  return { nodes: out, cut: false };
}

// Merges consecutive same-role messages and joins system messages, like Ollama's collate.
function collate(messages) {
  const system = [];
  const collated = [];
  for (const m of messages) {
    if (m.role === "system") system.push(m.content);
    const last = collated[collated.length - 1];
    if (last && last.role === m.role && m.role !== "tool") last.content += "\n\n" + m.content;
    else collated.push({ ...m });
  }
  return { system: system.join("\n\n"), messages: collated };
}

// Renders a chat prompt from messages as Ollama's template.Execute does.
export function renderChat(templateSrc, messages) {
  const nodes = parseTemplate(templateSrc);
  const { system, messages: msgs } = collate(messages);
  if (usesVar(nodes, "Messages")) {
    const tplMessages = msgs.map((m) => ({ Role: m.role, Content: m.content }));
    return execute(nodes, { System: system, Messages: tplMessages, Tools: [], Response: "" });
  }
  let out = "";
  let sys = "", prompt = "", response = "";
  const run = () => { out += execute(nodes, { System: sys, Prompt: prompt, Response: response }); sys = prompt = response = ""; };
  for (const m of msgs) {
    if (m.role === "system") { if (prompt || response) run(); sys = m.content; }
    else if (m.role === "user") { if (response) run(); prompt = m.content; }
    else if (m.role === "assistant") response = m.content;
  }
  out += execute(cutAfterResponse(nodes).nodes, { System: sys, Prompt: prompt, Response: response });
  return out;
}

// Ollama's named templates that the compat server can detect from a GGUF chat template.
// Ollama picks the closest of ~30 by edit distance; we recognise the two families by their
// special tokens and otherwise fall back to Ollama's default "{{ .Prompt }}".
export const NAMED_TEMPLATES = {
  chatml: {
    template: "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
    parameters: { stop: ["<|im_start|>", "<|im_end|>"] },
  },
  "llama3-instruct": {
    template: "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    parameters: { stop: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"] },
  },
};

export const DEFAULT_TEMPLATE = "{{ .Prompt }}";

export function detectNamedTemplate(chatTemplate) {
  if (typeof chatTemplate !== "string" || chatTemplate === "") return null;
  if (chatTemplate.includes("<|im_start|>")) return "chatml";
  if (chatTemplate.includes("<|start_header_id|>")) return "llama3-instruct";
  return null;
}
