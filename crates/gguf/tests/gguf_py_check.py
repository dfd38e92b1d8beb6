#!/usr/bin/env python3
"""Independent check of a GGUF written by tb-gguf, using PyPI `gguf` (llama.cpp's gguf-py).

usage: gguf_py_check.py EXPECT.json

EXPECT.json: {"path": FILE, "version": 3, "alignment": 32,
              "kv": [[key, gguf-type-name, element-type-name-or-null, value-or-null], ...] (file order),
              "tensors": [{"name", "type", "shape" (numpy order), "f32": RAW-F32-FILE}]}
Checks that gguf-py parses the file, that every key has the expected GGUF type (and value, when
given), that tensors have the expected ggml types and shapes in order, and that gguf-py's own
dequantization equals ours bit for bit. Exits non-zero with one line per problem.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGMLQuantizationType
from gguf.quants import dequantize


def main() -> int:
    exp = json.load(open(sys.argv[1]))
    r = GGUFReader(exp["path"])
    problems = []
    if r.alignment != exp["alignment"]:
        problems.append(f"alignment {r.alignment} != {exp['alignment']}")
    version = int(r.fields["GGUF.version"].parts[-1][0])
    if version != exp["version"]:
        problems.append(f"version {version} != {exp['version']}")
    user_fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    if list(user_fields) != [kv[0] for kv in exp["kv"]]:
        problems.append(f"keys/order differ: {list(user_fields)} vs {[kv[0] for kv in exp['kv']]}")
    for key, tname, elem, value in exp["kv"]:
        f = user_fields.get(key)
        if f is None:
            problems.append(f"missing key {key}")
            continue
        if f.types[0].name != tname:
            problems.append(f"{key}: type {f.types[0].name} != {tname}")
        if elem is not None and (len(f.types) < 2 or f.types[1].name != elem):
            problems.append(f"{key}: element type {f.types[1:]} != {elem}")
        if value is not None:
            got = f.contents()
            if isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
                ok = np.allclose(np.asarray(got, dtype=np.float64), np.asarray(value, dtype=np.float64), rtol=0, atol=0)
            else:
                ok = got == value
            if not ok:
                problems.append(f"{key}: value {str(got)[:80]} != {str(value)[:80]}")
    names = [t.name for t in r.tensors]
    want = [t["name"] for t in exp["tensors"]]
    if names != want:
        problems.append(f"tensor order {names} != {want}")
    by_name = {t.name: t for t in r.tensors}
    for t in exp["tensors"]:
        rt = by_name.get(t["name"])
        if rt is None:
            continue
        if rt.tensor_type.name != t["type"]:
            problems.append(f"{t['name']}: type {rt.tensor_type.name} != {t['type']}")
        shape = [int(x) for x in reversed(rt.shape.tolist())]
        if shape != t["shape"]:
            problems.append(f"{t['name']}: shape {shape} != {t['shape']}")
        theirs = dequantize(rt.data, rt.tensor_type).astype(np.float32).reshape(-1)
        ours = np.fromfile(t["f32"], dtype="<f4")
        if theirs.shape != ours.shape:
            problems.append(f"{t['name']}: {theirs.shape} values vs ours {ours.shape}")
            continue
        same = (theirs.view(np.uint32) == ours.view(np.uint32)) | (np.isnan(theirs) & np.isnan(ours))
        if not same.all():
            bad = int((~same).sum())
            diff = float(np.nanmax(np.abs(theirs.astype(np.float64) - ours.astype(np.float64))))
            problems.append(f"{t['name']} ({t['type']}): {bad}/{ours.size} values differ from gguf-py, max |diff| {diff:g}")
    for p in problems:
        print("PROBLEM:", p)
    print(f"checked {len(exp['kv'])} keys and {len(exp['tensors'])} tensors: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
