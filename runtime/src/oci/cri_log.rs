//! Container logs in the CRI log format, one line per entry:
//! `<RFC 3339 time> <stdout|stderr> <F|P> <content>`, where `P` marks a
//! piece of a line longer than MAX_LINE and `F` a line's last piece. The
//! monitor writes them; ContainerLogs reads (and follows) them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::proto::{LogEntry, LogStream};

/// Longer lines are split into `P` pieces (as containerd does).
pub const MAX_LINE: usize = 16 * 1024;

/// Writes one stream's output into the shared log file, a line at a time.
pub struct LogWriter {
    file: Arc<Mutex<File>>,
    stream: &'static str,
    pending: Vec<u8>,
}

impl LogWriter {
    pub fn new(file: Arc<Mutex<File>>, stream: LogStream) -> LogWriter {
        let stream = match stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        };
        LogWriter {
            file,
            stream,
            pending: Vec::new(),
        }
    }

    /// Takes the next chunk of output; writes every completed line.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            self.emit(&line[..line.len() - 1], false)?;
        }
        while self.pending.len() > MAX_LINE {
            let piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.emit(&piece, true)?;
        }
        Ok(())
    }

    /// At end of output: a last line without a newline is still a line.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest, false)?;
        }
        Ok(())
    }

    fn emit(&self, content: &[u8], partial: bool) -> io::Result<()> {
        let mut line = format!(
            "{} {} {} ",
            Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            self.stream,
            if partial { "P" } else { "F" }
        )
        .into_bytes();
        line.extend_from_slice(content);
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line)
    }
}

/// Parses one line of a log file.
pub fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    let timestamp = DateTime::parse_from_rfc3339(time)
        .ok()?
        .timestamp_nanos_opt()?;
    Some(LogEntry {
        timestamp,
        stream: stream as i32,
        content,
        partial,
    })
}

/// What to read from a log.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogQuery {
    pub follow: bool,
    /// 0: all lines.
    pub tail_lines: usize,
    /// 0: from the beginning (nanoseconds).
    pub since: i64,
}

/// Reads the log at `path`, sending entries to `send` (which returns false
/// when the reader has gone). With `follow`, keeps reading as the file grows
/// until `exited()` is true and the file is drained.
pub async fn read_log<S, E>(path: &Path, query: LogQuery, mut send: S, exited: E) -> io::Result<()>
where
    S: FnMut(LogEntry) -> futures::future::BoxFuture<'static, bool>,
    E: Fn() -> bool,
{
    let mut file = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    if let Some(f) = file.as_mut() {
        f.read_to_end(&mut buf)?;
    }
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut entries: Vec<LogEntry> = buf[..complete]
        .split(|&b| b == b'\n')
        .filter_map(parse_line)
        .filter(|e| e.timestamp >= query.since)
        .collect();
    if query.tail_lines > 0 && entries.len() > query.tail_lines {
        entries.drain(..entries.len() - query.tail_lines);
    }
    for entry in entries {
        if !send(entry).await {
            return Ok(());
        }
    }
    if !query.follow {
        return Ok(());
    }
    let mut offset = complete as u64;
    let mut rest: Vec<u8> = buf[complete..].to_vec();
    loop {
        // Decide before reading, so that output written before the exit was
        // seen is still read once more.
        let done = exited();
        if file.is_none() {
            file = File::open(path).ok();
        }
        let mut fresh = Vec::new();
        if let Some(f) = file.as_mut() {
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut fresh)?;
            offset += fresh.len() as u64;
        }
        rest.extend_from_slice(&fresh);
        if let Some(last_nl) = rest.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = rest.drain(..=last_nl).collect();
            for entry in lines.split(|&b| b == b'\n').filter_map(parse_line) {
                if entry.timestamp >= query.since && !send(entry).await {
                    return Ok(());
                }
            }
        }
        if done {
            return Ok(());
        }
        if fresh.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The last `max` bytes of a log's content (for a failed container's
/// status message), as text lines without the log format's prefixes.
pub fn tail_text(path: &Path, max: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Each line carries ~45 bytes of prefix; read enough to fill `max`.
    let want = (max as u64 * 4).min(len);
    if file.seek(SeekFrom::Start(len - want)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let mut text = String::new();
    for entry in buf.split(|&b| b == b'\n').filter_map(parse_line) {
        text.push_str(&String::from_utf8_lossy(&entry.content));
        if !entry.partial {
            text.push('\n');
        }
    }
    if text.len() > max {
        let mut cut = text.len() - max;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(path: &Path) -> (LogWriter, LogWriter) {
        let file = Arc::new(Mutex::new(File::create(path).unwrap()));
        (
            LogWriter::new(file.clone(), LogStream::Stdout),
            LogWriter::new(file, LogStream::Stderr),
        )
    }

    #[test]
    fn writes_lines_and_parses_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let (mut out, mut err) = writer(&path);
        out.write(b"hello\nwor").unwrap();
        err.write(b"oops\n").unwrap();
        out.write(b"ld\nno newline").unwrap();
        out.finish().unwrap();
        let text = std::fs::read(&path).unwrap();
        let entries: Vec<LogEntry> = text.split(|&b| b == b'\n').filter_map(parse_line).collect();
        let contents: Vec<&[u8]> = entries.iter().map(|e| e.content.as_slice()).collect();
        assert_eq!(
            contents,
            vec![&b"hello"[..], b"oops", b"world", b"no newline"]
        );
        assert_eq!(entries[1].stream, LogStream::Stderr as i32);
        assert!(entries.iter().all(|e| !e.partial && e.timestamp > 0));
        assert_eq!(tail_text(&path, 1000), "hello\noops\nworld\nno newline");
        let short = tail_text(&path, 10);
        assert!(
            short.len() <= 10 && "no newline".ends_with(&short),
            "{short:?}"
        );
    }

    #[test]
    fn splits_long_lines_into_partial_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let (mut out, _) = writer(&path);
        let long = vec![b'x'; MAX_LINE + 10];
        out.write(&long).unwrap();
        out.write(b"\n").unwrap();
        let text = std::fs::read(&path).unwrap();
        let entries: Vec<LogEntry> = text.split(|&b| b == b'\n').filter_map(parse_line).collect();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].partial && !entries[1].partial);
        assert_eq!(
            entries[0].content.len() + entries[1].content.len(),
            MAX_LINE + 10
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"2026-01-01T00:00:00Z stdin F x").is_none());
        let e = parse_line(b"2026-01-01T00:00:00.5Z stdout F a b").unwrap();
        assert_eq!(e.content, b"a b");
    }

    #[tokio::test]
    async fn tail_and_follow_read_what_is_there_then_stop_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let (mut out, _) = writer(&path);
        for i in 0..5 {
            out.write(format!("line {i}\n").as_bytes()).unwrap();
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        read_log(
            &path,
            LogQuery {
                follow: true,
                tail_lines: 2,
                since: 0,
            },
            move |e| {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&e.content).into_owned());
                Box::pin(async { true })
            },
            || true,
        )
        .await
        .unwrap();
        assert_eq!(*got.lock().unwrap(), vec!["line 3", "line 4"]);
    }
}
