//! `tb_eval::compat::CompatServer`: tools/ollama-compat provisioned and started on a free port
//! answers Ollama's `/api/version` as the stand-in it is, and stops with its handle; a server
//! that dies at start is an error carrying its log, never a hang.

use std::path::Path;

use tb_eval::compat::{CompatError, CompatServer};
use tb_eval::ollama::BlobDigest;
use tb_eval::OllamaClient;

#[test]
fn the_tool_starts_on_a_free_port_and_stops_with_its_handle() {
    let dir = tb_testkit::ollama_compat();
    CompatServer::provision(&dir).unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("server.log");
    let server = CompatServer::start(&dir, &state.path().join("models"), 1, &log).unwrap();
    let host = server.host().to_owned();
    let version = OllamaClient::new(&host).unwrap().version().unwrap();
    assert!(version.ends_with("-compat"), "{version}");
    assert!(state.path().join("models").is_dir());
    drop(server);
    assert!(
        std::net::TcpStream::connect(&host).is_err(),
        "{host} still answers after the handle was dropped"
    );
}

/// A folder shaped like the tool (lock file, installed stamp) whose server exits at once.
fn dying_tool(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("node_modules")).unwrap();
    let lock = b"{\"lockfileVersion\": 3}";
    std::fs::write(dir.join("package-lock.json"), lock).unwrap();
    let digest = BlobDigest::of_bytes(lock);
    let hex = digest.as_str().trim_start_matches("sha256:");
    std::fs::write(dir.join("node_modules/.tb-npm-ci.sha256"), hex).unwrap();
    std::fs::write(
        dir.join("src/server.js"),
        "console.error('cannot load llama.cpp: boom'); process.exit(3);\n",
    )
    .unwrap();
}

#[test]
fn a_server_that_dies_at_start_is_an_error_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let tool = tmp.path().join("tool");
    dying_tool(&tool);
    // Installed (the stamp matches the lock file): no npm run.
    CompatServer::provision(&tool).unwrap();
    let log = tmp.path().join("server.log");
    let err = CompatServer::start(&tool, &tmp.path().join("models"), 1, &log).unwrap_err();
    assert!(matches!(err, CompatError::Start(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot load llama.cpp: boom"), "{msg}");
    assert!(msg.contains("server.log"), "{msg}");
}

#[test]
fn a_folder_without_the_server_is_not_the_tool() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("package-lock.json"), "{}").unwrap();
    let err = CompatServer::provision(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("src/server.js"), "{msg}");
}
