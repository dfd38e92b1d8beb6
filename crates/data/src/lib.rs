//! Instruction datasets for tunebench: schema and validation, chat formatting through the model's
//! template, tokenisation with completion-only loss masks, padded batches and padding-free packing.

pub mod batch;
pub mod error;
pub mod record;
pub mod stats;
pub mod tokenize;

pub use batch::{packed_batch, padded_batch, Batch, IGNORE};
pub use error::{Error, Result};
pub use record::{Body, Dataset, Record, Split};
pub use tokenize::{
    tokenize_record, tokenize_records, TokenizeReport, TokenizedExample, Truncation,
};
