//! Errors as kubectl prints them: `Error from server (Reason): message` for
//! API errors, `error: ...` for everything else, and a marker for errors
//! that were already printed.

use rkube_api::client::retryable;
use std::error::Error as _;
use std::fmt;
use std::sync::OnceLock;
use tonic::{Code, Status};

/// The server list, for messages about failing to reach it.
static SERVERS: OnceLock<String> = OnceLock::new();
/// Whether the command dials them in plaintext (no TLS settings found).
static PLAINTEXT: OnceLock<bool> = OnceLock::new();

/// Records which servers the command talks to, and whether in plaintext.
pub fn set_servers(list: &str, plaintext: bool) {
    let _ = SERVERS.set(list.to_string());
    let _ = PLAINTEXT.set(plaintext);
}

/// What to add to "Unable to connect" when plaintext may be the cause: a
/// secure cluster answers nothing to it.
const PLAINTEXT_HINT: &str = " (dialled in plaintext: a secure cluster needs its kubeconfig, \
     --kubeconfig or RKUBECONFIG, e.g. .rkube/compose-pki/admin.kubeconfig)";

/// An error the API server answered (or a failure to reach any server),
/// already formatted the way kubectl prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// kubectl's reason word (`NotFound`, `AlreadyExists`, ...); `None` when
    /// no server could be reached.
    pub reason: Option<&'static str>,
    pub code: Code,
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Some(reason) => write!(f, "Error from server ({reason}): {}", self.message),
            None => {
                match SERVERS.get() {
                    Some(list) => write!(
                        f,
                        "Unable to connect to the server ({list}): {}",
                        self.message
                    )?,
                    None => write!(f, "Unable to connect to the server: {}", self.message)?,
                }
                if PLAINTEXT.get() == Some(&true) {
                    f.write_str(PLAINTEXT_HINT)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// The error has been printed already; only the exit code remains to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("errors were reported")
    }
}

impl std::error::Error for Reported {}

/// kubectl's reason word for a gRPC status code.
pub fn reason_for(code: Code) -> &'static str {
    match code {
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::Aborted => "Conflict",
        Code::InvalidArgument => "Invalid",
        Code::PermissionDenied => "Forbidden",
        Code::Unauthenticated => "Unauthorized",
        Code::Unavailable => "ServiceUnavailable",
        Code::DeadlineExceeded => "Timeout",
        Code::OutOfRange => "Gone",
        Code::FailedPrecondition => "Conflict",
        Code::ResourceExhausted => "TooManyRequests",
        Code::Unimplemented => "MethodNotAllowed",
        Code::Cancelled => "Timeout",
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => "InternalError",
    }
}

/// Whether a status means no server answered at all (as opposed to a
/// server answering with an error).
pub fn is_connection_failure(s: &Status) -> bool {
    if !retryable(s) {
        return false;
    }
    let m = s.message().to_ascii_lowercase();
    m.contains("transport error")
        || m.contains("connection")
        || m.contains("connect")
        || m.contains("dns error")
        || m.contains("h2 protocol")
}

/// The innermost cause of a transport failure (`Connection refused`).
fn root_cause(s: &Status) -> Option<String> {
    let mut cause = s.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

/// Turns a gRPC status into the error kubectl would print.
pub fn from_status(s: &Status) -> ServerError {
    let mut message = if s.message().is_empty() {
        format!("{}", s.code())
    } else {
        s.message().to_string()
    };
    let unreachable = is_connection_failure(s);
    if unreachable {
        if let Some(cause) = root_cause(s).filter(|c| !message.contains(c.as_str())) {
            message = format!("{message}: {cause}");
        }
    }
    ServerError {
        reason: if unreachable {
            None
        } else {
            Some(reason_for(s.code()))
        },
        code: s.code(),
        message,
    }
}

/// `from_status` as an `anyhow::Error`, for `?`.
pub fn server(s: Status) -> anyhow::Error {
    anyhow::Error::new(from_status(&s))
}

/// How an error is shown on stderr (`None`: it was shown already).
pub fn render(e: &anyhow::Error) -> Option<String> {
    if e.downcast_ref::<Reported>().is_some() {
        return None;
    }
    if let Some(se) = e.downcast_ref::<ServerError>() {
        return Some(se.to_string());
    }
    Some(format!("error: {e:#}"))
}

/// Collects the outcome of a command that goes on after errors, as kubectl
/// does when it handles several objects.
#[derive(Debug, Default)]
pub struct Outcome {
    failed: bool,
}

impl Outcome {
    pub fn new() -> Outcome {
        Outcome::default()
    }

    /// Prints the error now and remembers that the command failed.
    pub fn fail(&mut self, e: &anyhow::Error) {
        if let Some(text) = render(e) {
            crate::output::eprint_line(&text);
        }
        self.failed = true;
    }

    /// `fail` for a gRPC status.
    pub fn fail_status(&mut self, s: &Status) {
        crate::output::eprint_line(&from_status(s).to_string());
        self.failed = true;
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// `Err(Reported)` if anything failed.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.failed {
            Err(Reported.into())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_like_kubectl() {
        let e = from_status(&Status::not_found("pods \"x\" not found"));
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
        for (code, reason) in [
            (Code::AlreadyExists, "AlreadyExists"),
            (Code::Aborted, "Conflict"),
            (Code::InvalidArgument, "Invalid"),
            (Code::PermissionDenied, "Forbidden"),
            (Code::DeadlineExceeded, "Timeout"),
            (Code::OutOfRange, "Gone"),
        ] {
            assert_eq!(from_status(&Status::new(code, "m")).reason, Some(reason));
        }
        let e = from_status(&Status::unavailable("no leader is known yet"));
        assert_eq!(e.reason, Some("ServiceUnavailable"));
    }

    #[test]
    fn transport_failures_are_connection_errors() {
        let e = from_status(&Status::unknown("transport error"));
        assert_eq!(e.reason, None);
        assert!(e.to_string().starts_with("Unable to connect to the server"));
    }

    #[test]
    fn reported_errors_are_not_printed_twice() {
        assert_eq!(render(&Reported.into()), None);
        assert_eq!(
            render(&anyhow::anyhow!("bad")).as_deref(),
            Some("error: bad")
        );
    }
}
