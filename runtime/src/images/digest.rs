//! Content digests (`sha256:<hex>`) and a reader that computes one over
//! what passes through it.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// "sha256:<hex>" of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex part of a "sha256:<hex>" digest, checked.
pub fn hex_part(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest {digest:?} (only sha256)"))?;
    if hex.len() == 64
        && hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        Ok(hex)
    } else {
        Err(format!("malformed digest {digest:?}"))
    }
}

/// Hashes (and counts) every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest (so the digest covers everything), then returns it.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_known_content() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256(b""), empty);
        let r = HashingReader::new(&b""[..]);
        assert_eq!(r.finish().unwrap(), (empty.to_string(), 0));
        assert!(hex_part(empty).is_ok());
        assert!(hex_part("sha256:XYZ").is_err());
        assert!(hex_part("md5:00").is_err());
    }
}
