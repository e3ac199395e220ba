//! Logging: tracing for everything, and a bridge that turns raft-rs' slog
//! records into tracing events.

use slog::{Drain, Level, OwnedKVList, Record, KV};
use std::fmt::Write as _;

/// Installs the tracing subscriber (RUST_LOG, default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

struct TracingDrain;

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = format!("{}{}", record.msg(), kv.0);
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            Level::Info => tracing::info!(target: "raft", "{msg}"),
            Level::Debug => tracing::debug!(target: "raft", "{msg}"),
            Level::Trace => tracing::trace!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

/// A slog logger for raft-rs that writes through tracing.
pub fn slog_to_tracing() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
