//! The scheduler.

use crate::controllers::informer::Informers;
use crate::controllers::ControllerConfig;

/// Starts this controller on `informers` (placeholder until implemented).
pub fn start(_informers: &Informers, _cfg: &ControllerConfig) {}
