//! Endpoints controller.

use super::informer::Informers;
use super::ControllerConfig;

/// Starts this controller on `informers` (placeholder until implemented).
pub fn start(_informers: &Informers, _cfg: &ControllerConfig) {}
