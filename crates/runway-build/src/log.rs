//! A build's log: every line written to the file the caller names (by a thread of its
//! own, so the async runtime never waits on the disk), handed to the caller's callback as
//! it comes, and the last lines kept for the error message of a failed build.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

/// The longest line kept; longer ones are cut (a minified file echoed by a tool).
const MAX_LINE: usize = 16 * 1024;

/// Where a build's lines go.
pub(crate) struct BuildLog<'a> {
    tx: Option<mpsc::Sender<String>>,
    writer: Option<std::thread::JoinHandle<io::Result<()>>>,
    callback: &'a (dyn Fn(&str) + Send + Sync),
    tail: Mutex<VecDeque<String>>,
    keep: usize,
}

impl<'a> BuildLog<'a> {
    /// Opens (creates or appends to) `path`, creating its directory.
    pub fn open(
        path: &Path,
        callback: &'a (dyn Fn(&str) + Send + Sync),
        keep: usize,
    ) -> io::Result<BuildLog<'a>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = mpsc::channel::<String>();
        let writer = std::thread::Builder::new()
            .name("build-log".into())
            .spawn(move || {
                let mut out = io::BufWriter::new(file);
                while let Ok(line) = rx.recv() {
                    out.write_all(line.as_bytes())?;
                    out.write_all(b"\n")?;
                    for line in rx.try_iter() {
                        out.write_all(line.as_bytes())?;
                        out.write_all(b"\n")?;
                    }
                    // Flushed whenever the queue is drained, so readers see lines promptly.
                    out.flush()?;
                }
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()
            })?;
        Ok(BuildLog {
            tx: Some(tx),
            writer: Some(writer),
            callback,
            tail: Mutex::new(VecDeque::new()),
            keep,
        })
    }

    /// Records one line.
    pub fn line(&self, line: &str) {
        let mut line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push_str(" [...]");
        }
        (self.callback)(&line);
        {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == self.keep {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(line);
        }
    }

    /// The last lines recorded, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Writes out everything recorded and closes the file.
    pub async fn close(mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if let Ok(Ok(Err(e))) = joined {
                tracing::warn!(error = %e, "cannot write the build log");
            }
        }
    }
}
