//! The per-service JSON access log, written off the hot path: requests hand their entry
//! to a bounded channel and a writer thread formats and appends it to
//! `<dir>/<service id>.log`, rotating files by size. When the writer falls behind,
//! entries are dropped and counted rather than slowing requests down.

use crate::config::AccessLogConfig;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// One request, as logged.
#[derive(Debug)]
pub(crate) struct Entry {
    pub time: SystemTime,
    pub service: Arc<str>,
    pub revision: Option<Arc<str>>,
    pub instance: Option<Arc<str>>,
    pub method: http::Method,
    /// The path, without the query (which may carry secrets).
    pub path: String,
    pub status: u16,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub request_id: http::HeaderValue,
    pub client: SocketAddr,
    /// The router's error kind, when it answered itself.
    pub error: Option<&'static str>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    service: &'a str,
    revision: Option<&'a str>,
    instance: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    duration_ms: f64,
    bytes_in: u64,
    bytes_out: u64,
    request_id: &'a str,
    client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The sending side; cheap to share.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    tx: SyncSender<Entry>,
    dropped: Counter,
}

impl AccessLog {
    /// Starts the writer thread.
    pub(crate) fn start(config: AccessLogConfig, dropped: Counter) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(config.buffer.max(1));
        std::thread::Builder::new()
            .name("runway-access-log".into())
            .spawn(move || Writer::new(config).run(rx))?;
        Ok(AccessLog { tx, dropped })
    }

    /// Queues an entry; drops it (and counts) if the writer is behind.
    pub(crate) fn record(&self, entry: Entry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

struct Open {
    file: BufWriter<File>,
    size: u64,
}

struct Writer {
    config: AccessLogConfig,
    files: HashMap<Arc<str>, Open>,
}

/// A file name for a service id: ids are letters, digits, '-' and '_' (the route table
/// checks), anything else is replaced so that no id can name a path elsewhere.
fn file_name(service: &str) -> String {
    let safe: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.log")
}

/// Where the access log of `service` is written under `dir`.
pub(crate) fn path_for(dir: &Path, service: &str) -> PathBuf {
    dir.join(file_name(service))
}

impl Writer {
    fn new(config: AccessLogConfig) -> Self {
        Writer {
            config,
            files: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Entry>) {
        while let Ok(entry) = rx.recv() {
            self.write(&entry);
            // Drain what is queued, then flush once.
            while let Ok(entry) = rx.try_recv() {
                self.write(&entry);
            }
            for open in self.files.values_mut() {
                let _ = open.file.flush();
            }
        }
    }

    fn write(&mut self, entry: &Entry) {
        let time = time::OffsetDateTime::from(entry.time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = Line {
            time,
            service: &entry.service,
            revision: entry.revision.as_deref(),
            instance: entry.instance.as_deref(),
            method: entry.method.as_str(),
            path: &entry.path,
            status: entry.status,
            duration_ms: entry.duration.as_secs_f64() * 1000.0,
            bytes_in: entry.bytes_in,
            bytes_out: entry.bytes_out,
            request_id: entry.request_id.to_str().unwrap_or(""),
            client: entry.client.to_string(),
            error: entry.error,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        if let Err(e) = self.append(&entry.service, &text) {
            tracing::warn!(service = %entry.service, error = %e, "cannot write the access log");
            self.files.remove(&entry.service);
        }
    }

    fn append(&mut self, service: &Arc<str>, text: &[u8]) -> std::io::Result<()> {
        let path = path_for(&self.config.dir, service);
        if !self.files.contains_key(service) {
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let size = file.metadata()?.len();
            self.files.insert(
                service.clone(),
                Open {
                    file: BufWriter::new(file),
                    size,
                },
            );
        }
        let needs_rotation = self
            .files
            .get(service)
            .is_some_and(|o| o.size > 0 && o.size + text.len() as u64 > self.config.max_bytes);
        if needs_rotation {
            if let Some(mut open) = self.files.remove(service) {
                open.file.flush()?;
            }
            self.rotate(&path)?;
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.files.insert(
                service.clone(),
                Open {
                    file: BufWriter::new(file),
                    size: 0,
                },
            );
        }
        if let Some(open) = self.files.get_mut(service) {
            open.file.write_all(text)?;
            open.size += text.len() as u64;
        }
        Ok(())
    }

    /// `x.log` becomes `x.log.1`, `x.log.1` becomes `x.log.2`, ...; the oldest beyond
    /// `keep` is removed.
    fn rotate(&self, path: &Path) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.config.keep == 0 {
            return std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(numbered(self.config.keep));
        for n in (1..self.config.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(path, numbered(1))
    }
}

#[cfg(test)]
mod tests;
