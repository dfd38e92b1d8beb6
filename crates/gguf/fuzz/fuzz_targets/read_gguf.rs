//! Fuzz the GGUF reader: parsing arbitrary bytes, then reading every key and tensor, must
//! return errors, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        for (k, _) in f.metadata().iter() {
            let _ = f.metadata().get_u32(k);
            let _ = f.metadata().get_str(k);
            let _ = f.metadata().get_str_array(k);
            let _ = f.metadata().get_u64_lenient(k);
        }
        for t in f.tensors() {
            let _ = f.tensor_data(&t.name);
            let _ = f.tensor_f32(&t.name);
        }
    }
});
