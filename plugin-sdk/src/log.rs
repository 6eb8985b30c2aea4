//! Capability `log`: lines in imgate's log, tagged with the plugin and the request id.
//!
//! Lines longer than 1 KiB are cut. Never log message bodies or secrets.

use crate::bindings::imgate::plugin::log as host;

pub use host::Level;

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
