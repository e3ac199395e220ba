//! Unpacking an image layer (a tar, gzipped or not) into a directory that
//! overlayfs can use as a lower layer: OCI whiteouts (`.wh.<name>`) become
//! 0/0 character devices and opaque markers (`.wh..wh..opq`) become the
//! `trusted.overlay.opaque` attribute, as overlayfs expects.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::digest::HashingReader;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What unpacking found: the layer's diff id (the digest of the
/// uncompressed tar) and its uncompressed size.
#[derive(Debug)]
pub struct Unpacked {
    pub diff_id: String,
    pub size: u64,
}

/// Unpacks the layer blob at `blob` into `dest` (which must not exist).
pub fn unpack(blob: &Path, dest: &Path) -> anyhow::Result<Unpacked> {
    let mut file = BufReader::new(
        File::open(blob).with_context(|| format!("opening layer {}", blob.display()))?,
    );
    let mut magic = [0u8; 2];
    let gz = {
        let n = read_prefix(file.get_mut(), &mut magic)?;
        n == 2 && magic == [0x1f, 0x8b]
    };
    let file = BufReader::new(
        File::open(blob).with_context(|| format!("opening layer {}", blob.display()))?,
    );
    let stream: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut hashing = HashingReader::new(stream);
    unpack_tar(&mut hashing, dest)?;
    let (diff_id, size) = hashing.finish().context("reading the rest of the layer")?;
    Ok(Unpacked { diff_id, size })
}

fn read_prefix(file: &mut File, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).context("reading the layer")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn unpack_tar(reader: &mut dyn Read, dest: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries().context("reading the layer's tar")? {
        let mut entry = entry.context("reading a layer entry")?;
        let path = entry
            .path()
            .context("a layer entry has a bad path")?
            .into_owned();
        let rel = clean(&path)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
        if name.starts_with(WHITEOUT_PREFIX) {
            // A whiteout acts on the directory it names: that directory
            // must not lead out of the layer through a symlink.
            fs::create_dir_all(&parent)?;
            ensure_inside(dest, &parent)?;
        }
        if name == OPAQUE_MARKER {
            fs::create_dir_all(&parent)?;
            set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            fs::create_dir_all(&parent)?;
            let target = parent.join(hidden);
            remove_any(&target)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .with_context(|| format!("making whiteout {}", target.display()))?;
        } else {
            entry
                .unpack_in(dest)
                .with_context(|| format!("unpacking {}", rel.display()))?;
        }
    }
    Ok(())
}

/// The entry's path relative to the layer root; `..` is refused.
fn clean(path: &Path) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("layer entry {} escapes the layer", path.display())
            }
        }
    }
    Ok(out)
}

fn ensure_inside(dest: &Path, dir: &Path) -> anyhow::Result<()> {
    let root = fs::canonicalize(dest)?;
    let real = fs::canonicalize(dir)?;
    anyhow::ensure!(
        real.starts_with(&root),
        "layer entry {} leads out of the layer",
        dir.display()
    );
    Ok(())
}

fn remove_any(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> anyhow::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the value
    // pointer and length describe a live slice.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting {name} on {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files_and_whiteouts_and_hashes_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        let tar = layer(&[("etc/motd", b"hi"), ("etc/.wh.gone", b""), ("bin/sh", b"x")]);
        let blob = dir.path().join("blob");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        fs::write(&blob, gz.finish().unwrap()).unwrap();
        let dest = dir.path().join("layer");
        let got = unpack(&blob, &dest).unwrap();
        assert_eq!(got.diff_id, super::super::digest::sha256(&tar));
        assert_eq!(fs::read(dest.join("etc/motd")).unwrap(), b"hi");
        let wh = fs::symlink_metadata(dest.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
    }

    #[test]
    fn refuses_whiteouts_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), b"keep").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, "escape", &outside).unwrap();
        let mut w = tar::Header::new_gnu();
        w.set_size(0);
        w.set_mode(0o644);
        w.set_uid(0);
        w.set_gid(0);
        w.set_mtime(0);
        w.set_cksum();
        b.append_data(&mut w, "escape/.wh.victim", &b""[..])
            .unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b.into_inner().unwrap()).unwrap();
        assert!(unpack(&blob, &dir.path().join("layer")).is_err());
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
    }

    #[test]
    fn refuses_entries_that_escape() {
        assert!(clean(Path::new("../etc/passwd")).is_err());
        assert_eq!(clean(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }
}
