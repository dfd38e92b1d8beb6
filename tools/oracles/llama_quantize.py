#!/usr/bin/env python3
"""llama.cpp's own `llama_model_quantize` (node-llama-cpp 3.21.1's prebuilt libllama.so) through
ctypes, as an oracle for tunebench's exporter and quantizer. Standard library only.

usage: python3 tools/oracles/llama_quantize.py IN.gguf OUT.gguf FTYPE [THREADS]
FTYPE is llama.cpp's llama_ftype number (Q4_0 = 2, Q8_0 = 7, Q4_K_M = 15, F16 = 1, BF16 = 32).
The parameter struct mirrors `llama_model_quantize_params` in include/llama.h of that release.
"""
import ctypes
import glob
import os
import sys


class Params(ctypes.Structure):
    _fields_ = [
        ("nthread", ctypes.c_int32),
        ("ftype", ctypes.c_int32),
        ("output_tensor_type", ctypes.c_int32),
        ("token_embedding_type", ctypes.c_int32),
        ("allow_requantize", ctypes.c_bool),
        ("quantize_output_tensor", ctypes.c_bool),
        ("only_copy", ctypes.c_bool),
        ("pure", ctypes.c_bool),
        ("keep_split", ctypes.c_bool),
        ("dry_run", ctypes.c_bool),
        ("imatrix", ctypes.c_void_p),
        ("kv_overrides", ctypes.c_void_p),
        ("tt_overrides", ctypes.c_void_p),
        ("prune_layers", ctypes.c_void_p),
        ("max_buf_size", ctypes.c_size_t),
    ]


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    tools = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    libs = sorted(glob.glob(os.path.join(tools, "node_modules/@node-llama-cpp/linux-x64/bins/**/libllama*.so"), recursive=True))
    if not libs:
        print("libllama.so not found under tools/node_modules (run npm ci in tools/)", file=sys.stderr)
        return 2
    lib = ctypes.CDLL(libs[0])
    lib.llama_backend_init()
    lib.llama_model_quantize_default_params.restype = Params
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    p = lib.llama_model_quantize_default_params()
    p.ftype = int(sys.argv[3])
    p.nthread = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    rc = lib.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))
    if rc != 0:
        print(f"llama_model_quantize failed with {rc}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
