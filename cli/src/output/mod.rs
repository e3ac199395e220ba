//! Everything that turns objects into text: `-o` formats, tables, ages,
//! describe pages, and writing to stdout/stderr without panicking.

pub mod age;
pub mod describe;
pub mod format;
pub mod printer;
pub mod quantity;
pub mod rows;
pub mod table;
pub mod tabwriter;

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout as is. A closed pipe (`rkubectl get pods | head`)
/// ends the program quietly instead of panicking.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let r = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    if let Err(e) = r {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        std::process::exit(1);
    }
}

/// Writes one line to stdout.
pub fn print_line(text: &str) {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    print(&s);
}

/// Writes one line to stderr, ignoring failures to do so.
pub fn eprint_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
}
