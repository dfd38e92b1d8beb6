//! llama.cpp's own `llama_model_quantize` from node-llama-cpp's prebuilt `libllama`, shared by
//! the byte-identity tests and the quantize benchmark.

use std::ffi::{c_void, CString};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use super::llama_lib_dir;

#[repr(C)]
#[derive(Clone, Copy)]
struct LlamaModelQuantizeParams {
    nthread: i32,
    ftype: i32,
    output_tensor_type: i32,
    token_embedding_type: i32,
    allow_requantize: bool,
    quantize_output_tensor: bool,
    only_copy: bool,
    pure: bool,
    keep_split: bool,
    dry_run: bool,
    imatrix: *const c_void,
    kv_overrides: *const c_void,
    tt_overrides: *const c_void,
    prune_layers: *const i32,
    max_buf_size: usize,
}

struct Llama {
    lib: libloading::Library,
}

// SAFETY: the library handle is only used behind the mutex below
unsafe impl Send for Llama {}

fn llama() -> &'static Mutex<Llama> {
    static L: OnceLock<Mutex<Llama>> = OnceLock::new();
    L.get_or_init(|| {
        let dir = llama_lib_dir();
        let path = std::fs::read_dir(&dir)
            .expect("read lib dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libllama.") && n.ends_with(".so"))
            })
            .unwrap_or_else(|| panic!("FAILED: no libllama.*.so in {}", dir.display()));
        // SAFETY: plain C library; its RUNPATH ($ORIGIN) resolves libggml*.so next to it
        let lib = unsafe { libloading::Library::new(&path) }
            .unwrap_or_else(|e| panic!("FAILED to load {}: {e}", path.display()));
        // SAFETY: llama_backend_init(void)
        unsafe {
            let init: libloading::Symbol<unsafe extern "C" fn()> =
                lib.get(b"llama_backend_init").expect("llama_backend_init");
            init();
        }
        Mutex::new(Llama { lib })
    })
}

/// Runs `llama_model_quantize(input, output)` with `ftype` (a `llama_ftype`) on `threads`
/// threads; panics (fails the test) if it reports an error.
pub fn llama_quantize(input: &Path, output: &Path, ftype: u32, threads: i32) {
    let guard = llama().lock().unwrap_or_else(|e| e.into_inner());
    let inp = CString::new(input.to_str().expect("utf-8 path")).expect("path");
    let out = CString::new(output.to_str().expect("utf-8 path")).expect("path");
    // SAFETY: signatures as in llama.h of the release node-llama-cpp 3.21.1 ships (struct
    // layout checked against include/llama.h of that source)
    let rc = unsafe {
        let defaults: libloading::Symbol<unsafe extern "C" fn() -> LlamaModelQuantizeParams> =
            guard
                .lib
                .get(b"llama_model_quantize_default_params")
                .expect("symbol");
        let quantize: libloading::Symbol<
            unsafe extern "C" fn(*const i8, *const i8, *const LlamaModelQuantizeParams) -> u32,
        > = guard.lib.get(b"llama_model_quantize").expect("symbol");
        let mut p = defaults();
        p.ftype = ftype as i32;
        p.nthread = threads;
        quantize(inp.as_ptr().cast(), out.as_ptr().cast(), &p)
    };
    assert_eq!(rc, 0, "llama_model_quantize failed (ftype {ftype})");
}
