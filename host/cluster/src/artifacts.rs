//! Plugins and Python modules travel with a job: the client ships every file a script
//! names in a string literal that is a Wasm component (`.wasm`) or a Python module
//! (`.py`) on its machine; the JobManager and each TaskManager keep them in a
//! content-addressed directory (`<dir>/<blake3>/<file name>`, verified by digest) and
//! plan the script with its literals pointing there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::proto::Artifact;
use crate::spec::JobSpec;

/// The extensions of files that travel.
const SHIPPED: [&str; 2] = ["wasm", "py"];

/// The single-quoted literals of `script` (`''` is a quote inside one), with where each
/// starts and ends (quotes included). Comments are skipped.
fn literals(script: &str) -> Vec<(usize, usize, String)> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' => {
                let start = i;
                let mut value = Vec::new();
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            value.push(b'\'');
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    value.push(bytes[i]);
                    i += 1;
                }
                out.push((start, i + 1, String::from_utf8_lossy(&value).into_owned()));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn shipped(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| SHIPPED.iter().any(|s| e == *s))
}

/// Every file `script` names that travels, read from this machine (relative names from
/// `base`).
pub fn collect(script: &str, base: &Path) -> std::io::Result<Vec<Artifact>> {
    let mut by_name = BTreeMap::new();
    for (_, _, name) in literals(script) {
        let path = base.join(&name);
        if !shipped(&name) || by_name.contains_key(&name) || !path.is_file() {
            continue;
        }
        let content = std::fs::read(&path)?;
        by_name.insert(
            name.clone(),
            Artifact {
                digest: blake3::hash(&content).to_hex().to_string(),
                name,
                content,
            },
        );
    }
    Ok(by_name.into_values().collect())
}

/// Stores `artifacts` under `dir` (each checked against its digest) and returns `spec`
/// with every literal naming one pointing at its stored copy.
pub(crate) fn localize(
    spec: &JobSpec,
    artifacts: &[Artifact],
    dir: &Path,
) -> Result<JobSpec, String> {
    let mut local: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for a in artifacts {
        let digest = blake3::hash(&a.content).to_hex().to_string();
        if digest != a.digest {
            return Err(format!(
                "{} arrived damaged: its digest is {digest}, not {}",
                a.name, a.digest
            ));
        }
        let file_name = Path::new(&a.name)
            .file_name()
            .ok_or_else(|| format!("'{}' names no file", a.name))?;
        let folder = dir.join(&digest);
        let path = folder.join(file_name);
        if !path.is_file() {
            std::fs::create_dir_all(&folder)
                .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
            // Written aside and renamed: a reader never sees half a file.
            let partial = folder.join(format!(".{}.partial", std::process::id()));
            std::fs::write(&partial, &a.content)
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| format!("cannot store {}: {e}", path.display()))?;
        }
        local.insert(&a.name, path);
    }
    let mut text = String::with_capacity(spec.text.len());
    let mut at = 0;
    for (start, end, name) in literals(&spec.text) {
        if let Some(path) = local.get(name.as_str()) {
            text.push_str(&spec.text[at..start]);
            text.push('\'');
            text.push_str(&path.display().to_string().replace('\'', "''"));
            text.push('\'');
            at = end;
        }
    }
    text.push_str(&spec.text[at..]);
    Ok(JobSpec {
        text,
        ..spec.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_plugins_and_modules_travel_and_land_content_addressed() {
        let here = tempfile::tempdir().unwrap();
        std::fs::write(here.path().join("f.wasm"), b"\0asm").unwrap();
        std::fs::write(here.path().join("it's.py"), b"x = 1").unwrap();
        std::fs::write(here.path().join("data.csv"), b"a").unwrap();
        let script = "LOAD PLUGIN 'f.wasm'; -- 'gone.wasm'\n\
                      CREATE FUNCTION g AS 'G' LANGUAGE PYTHON USING 'it''s.py';\n\
                      SELECT 'f.wasm', 'data.csv', 'missing.py';";
        let artifacts = collect(script, here.path()).unwrap();
        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["f.wasm", "it's.py"]);
        let there = tempfile::tempdir().unwrap();
        let spec = JobSpec {
            file_name: "j.sql".into(),
            text: script.into(),
            parallelism: None,
            statement: 0,
            savepoint: None,
            ..Default::default()
        };
        let local = localize(&spec, &artifacts, there.path()).unwrap();
        let wasm = there.path().join(&artifacts[0].digest).join("f.wasm");
        assert_eq!(std::fs::read(&wasm).unwrap(), b"\0asm");
        assert!(
            local
                .text
                .contains(&format!("LOAD PLUGIN '{}'", wasm.display()))
        );
        assert!(local.text.contains("'data.csv', 'missing.py'"));
        assert!(local.text.contains("it''s.py'"));
        // A damaged file is refused by name.
        let mut damaged = artifacts.clone();
        damaged[0].content.push(1);
        let err = localize(&spec, &damaged, there.path()).unwrap_err();
        assert!(err.contains("f.wasm arrived damaged"), "{err}");
    }
}
