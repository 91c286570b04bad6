//! Source hygiene checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Rust files under `dir` (skipping `target` and hidden directories).
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "fuzz" {
                out.extend(rust_files(&path));
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    out
}

/// True if the file's first non-blank line is a `//!` doc comment (or it
/// is a build script, test or bench entry point, which need none).
pub fn has_module_doc(path: &Path, text: &str) -> bool {
    let in_src = path.components().any(|c| c.as_os_str() == "src");
    if !in_src || path.file_name().is_some_and(|n| n == "build.rs") {
        return true;
    }
    text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// Fails listing every module under `crates/`, `proto/` and `xtask/`
/// without a `//!` doc.
pub fn check(root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for top in ["crates", "proto", "xtask"] {
        for file in rust_files(&root.join(top)) {
            let text = std::fs::read_to_string(&file)?;
            if !has_module_doc(&file, &text) {
                missing.push(file.display().to_string());
            }
        }
    }
    if !missing.is_empty() {
        bail!("modules without a //! doc line:\n  {}", missing.join("\n  "));
    }
    println!("tidy: ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_doc_detection() {
        let p = Path::new("crates/x/src/a.rs");
        assert!(has_module_doc(p, "\n//! The thing.\nfn f() {}"));
        assert!(!has_module_doc(p, "// not a doc\n//! late"));
        assert!(has_module_doc(Path::new("crates/x/tests/t.rs"), "fn t() {}"));
    }
}
