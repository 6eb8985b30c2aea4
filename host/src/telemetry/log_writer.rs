//! Where log lines go: a shared buffer that a thread writes to stderr every [`FLUSH_EVERY`], so
//! that a request never waits on a `write` to stderr and a busy gateway makes one syscall for
//! many lines, without waking any thread per line.
//!
//! (`tracing-appender`'s non-blocking writer hands each line to its thread over a channel, which
//! wakes that thread for every line: measured, that cost more than the `write` it saved.)
//! Nothing is dropped: past [`MAX_BUFFERED`] the logging thread writes the buffer itself.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the buffer goes to stderr.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A buffer this large is written at once by whoever fills it.
const MAX_BUFFERED: usize = 256 * 1024;

#[derive(Default)]
struct Shared {
    buf: Mutex<Vec<u8>>,
}

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn flush(&self) {
        let lines = self.take();
        if !lines.is_empty() {
            // Nothing useful to do if stderr is gone.
            let _ = io::stderr().lock().write_all(&lines);
        }
    }
}

/// The `MakeWriter` of the log subscriber; see the module docs.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Writes what is buffered when dropped (keep it until the process ends) and stops the thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        self.shared.flush();
    }
}

impl BufferedStderr {
    /// The writer and the guard that flushes it; starts the flushing thread.
    pub fn start() -> io::Result<(BufferedStderr, FlushGuard)> {
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let flusher = shared.clone();
        std::thread::Builder::new().name("imgate-log".into()).spawn(move || {
            // Woken by the clock, or for good when the guard drops the sender.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(FLUSH_EVERY) {
                flusher.flush();
            }
        })?;
        Ok((BufferedStderr { shared: shared.clone() }, FlushGuard { shared, stop: Some(stop) }))
    }
}

/// One event's writer: `tracing-subscriber` formats a whole line, then writes it in one call.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let full = {
            let mut buf = self.shared.buf.lock().unwrap_or_else(|p| p.into_inner());
            buf.extend_from_slice(bytes);
            (buf.len() >= MAX_BUFFERED).then(|| std::mem::take(&mut *buf))
        };
        if let Some(lines) = full {
            io::stderr().lock().write_all(&lines)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { shared: &self.shared }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_in_the_buffer_until_a_flush_and_none_is_lost_past_the_cap() {
        let shared = Arc::new(Shared::default());
        let writer = BufferedStderr { shared: shared.clone() };
        writer.make_writer().write_all(b"one\n").expect("write");
        writer.make_writer().write_all(b"two\n").expect("write");
        assert_eq!(shared.take(), b"one\ntwo\n");
        // Past the cap the writer empties the buffer itself (to stderr): nothing stays behind.
        let big = vec![b'x'; MAX_BUFFERED];
        writer.make_writer().write_all(&big).expect("write");
        assert!(shared.take().is_empty());
    }
}
