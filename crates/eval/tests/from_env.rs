//! `OllamaClient::from_env` reads OLLAMA_HOST like Ollama (own binary: it sets the variable).

use tb_eval::OllamaClient;

#[test]
fn from_env_honours_ollama_host() {
    std::env::set_var("OLLAMA_HOST", "0.0.0.0:12345");
    assert_eq!(
        OllamaClient::from_env().unwrap().base_url(),
        "http://127.0.0.1:12345"
    );
    std::env::set_var("OLLAMA_HOST", "https://ollama.example.com");
    assert_eq!(
        OllamaClient::from_env().unwrap().base_url(),
        "https://ollama.example.com:443"
    );
    std::env::remove_var("OLLAMA_HOST");
    assert_eq!(
        OllamaClient::from_env().unwrap().base_url(),
        "http://127.0.0.1:11434"
    );
}
