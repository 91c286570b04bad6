//! `bedrock serve --config bedrock.toml` on the real binary: the file's
//! settings are used, a `BEDROCK_*` variable beats the file, and a bad
//! file stops start-up with a message naming it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::BIN;

/// Starts `bedrock serve --config <file>` with `env`, waits for the
/// serving line, checks the node answers, and kills it.
fn serve_with_config(file: &Path, env: &[(&str, &Path)]) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(file).stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null());
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().expect("spawn bedrock serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("bedrock: serving client API on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let addr = addr.expect("server announced its address");
    assert!(addr.starts_with("127.0.0.1:"), "client-addr from the file: {addr}");
}

#[test]
fn settings_come_from_the_file_unless_an_env_variable_overrides_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let from_file = tmp.path().join("from-file");
    let from_env = tmp.path().join("from-env");
    let file = tmp.path().join("bedrock.toml");
    std::fs::write(
        &file,
        format!(
            "# bedrock serve settings\ndata-dir = {:?}\nclient-addr = \"127.0.0.1:0\"\nsync = \"always\"\n",
            from_file.display().to_string()
        ),
    )
    .expect("write config");

    serve_with_config(&file, &[]);
    assert!(from_file.join("CURRENT").exists() || from_file.read_dir().is_ok_and(|mut d| d.next().is_some()));

    serve_with_config(&file, &[("BEDROCK_DATA_DIR", &from_env)]);
    assert!(from_env.read_dir().is_ok_and(|mut d| d.next().is_some()), "BEDROCK_DATA_DIR beats the file");
}

#[test]
fn an_unknown_key_or_a_bad_value_stops_start_up_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    for (text, expected) in [
        ("client-adress = \"127.0.0.1:0\"\n", "unknown key `client-adress`"),
        ("client-addr = \"not an address\"\n", "--client-addr"),
        ("id = [1, 2]\n", "key `id`"),
    ] {
        let file = tmp.path().join("bad.toml");
        std::fs::write(&file, text).expect("write config");
        let out = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&file)
            .output()
            .expect("run bedrock serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{text}: expected {expected:?} in:\n{stderr}");
        assert!(!data.exists(), "{text}: nothing may be created before the config is valid");
    }
}
