//! One module per subcommand.

pub mod bench;
pub mod data_check;
pub mod demo;
pub mod eval;
pub mod eval_loss;
pub mod export;
pub mod fetch_model;
pub mod generate;
pub mod import_gguf;
pub mod inspect;
pub mod logits;
pub mod make_model;
pub mod merge;
pub mod quantize;
pub mod regress;
pub mod report;
pub mod train;
