//! rkube-echo: the project's own echo server for its `echo` image. Every
//! HTTP request is answered with the pod's name (HOSTNAME), the caller's
//! address as the server sees it (so a test can tell NAT from none) and
//! the request line. Only the standard library: the image carries this
//! binary and the few libraries it links.
//!
//! Usage: rkube-echo [--listen ADDR]   (default 0.0.0.0:$PORT, PORT=8080)

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn main() {
    let mut listen = format!(
        "0.0.0.0:{}",
        std::env::var("PORT").unwrap_or_else(|_| "8080".into())
    );
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(a) => listen = a,
                None => fail("--listen needs an address"),
            },
            "-h" | "--help" => {
                println!("usage: rkube-echo [--listen ADDR]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => fail(&format!("listening on {listen}: {e}")),
    };
    println!("rkube-echo listening on {listen} as {}", pod_name());
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = answer(stream) {
                        eprintln!("connection: {e}");
                    }
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("rkube-echo: {msg}");
    std::process::exit(2)
}

fn pod_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers (bounded).
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let body = format!(
        "pod: {}\nclient: {}\nrequest: {}\n",
        pod_name(),
        peer,
        request_line.trim()
    );
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
