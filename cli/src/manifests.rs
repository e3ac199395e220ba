//! Reading `-f FILE|DIR|-`: every file is decoded before anything is sent,
//! so one bad manifest means nothing is done.

use anyhow::{anyhow, bail, Result};
use rkube_api::manifest;
use rkube_api::Object;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One decoded object.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub object: Object,
}

/// Whether a file in a directory is a manifest (by extension).
pub fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

/// The files named by one `-f` argument: the file itself, or a directory's
/// manifest files sorted by name (`recursive`: also in subdirectories).
pub fn expand(arg: &str, recursive: bool) -> Result<Vec<PathBuf>> {
    if arg == "-" {
        return Ok(vec![PathBuf::from("-")]);
    }
    let path = PathBuf::from(arg);
    if !path.exists() {
        bail!("the path {arg:?} does not exist");
    }
    if !path.is_dir() {
        return Ok(vec![path]);
    }
    let mut out = Vec::new();
    walk(&path, recursive, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read directory {:?}: {e}", dir.display().to_string()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, out)?;
            }
        } else if is_manifest_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn read_source(path: &Path) -> Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow!("cannot read standard input: {e}"))?;
        return Ok(("-".to_string(), text));
    }
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read {source:?}: {e}"))?;
    Ok((source, text))
}

/// Reads and decodes every file named by `args`. On failure returns every
/// problem found (one line each), and no objects.
pub fn load_all(args: &[String], recursive: bool) -> std::result::Result<Vec<Loaded>, Vec<String>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for a in args {
        match expand(a, recursive) {
            Ok(f) => files.extend(f),
            Err(e) => problems.push(format!("error: {e}")),
        }
    }
    let mut stdin_read = false;
    let mut out = Vec::new();
    for f in files {
        if f == Path::new("-") {
            if stdin_read {
                continue;
            }
            stdin_read = true;
        }
        let (source, text) = match read_source(&f) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("error: {e}"));
                continue;
            }
        };
        match manifest::decode(&text, &source) {
            Ok(objs) => out.extend(objs.into_iter().map(|object| Loaded { object })),
            Err(e) => problems.push(format!("error: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if out.is_empty() {
        return Err(vec!["error: no objects passed to the command".to_string()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rkubectl-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec: {containers: [{name: c, image: nginx}]}\n";

    #[test]
    fn directories_expand_sorted_and_filtered() {
        let d = tmpdir("expand");
        std::fs::write(d.join("b.yml"), POD.replace("NAME", "b")).unwrap();
        std::fs::write(d.join("a.yaml"), POD.replace("NAME", "a")).unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let objs = load_all(&[d.display().to_string()], false).unwrap();
        let names: Vec<&str> = objs.iter().map(|l| l.object.name()).collect();
        assert_eq!(names, ["a", "b"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn any_bad_file_fails_everything() {
        let d = tmpdir("bad");
        std::fs::write(d.join("a.yaml"), POD.replace("NAME", "a")).unwrap();
        std::fs::write(
            d.join("b.yaml"),
            "apiVersion: apps/vi\nkind: DaemonSet\nmetadata: {name: x}\n",
        )
        .unwrap();
        let errs = load_all(&[d.display().to_string()], false).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("apps/vi"), "{errs:?}");
        let errs = load_all(&["/nonexistent/x.yaml".to_string()], false).unwrap_err();
        assert!(errs[0].contains("does not exist"), "{errs:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
