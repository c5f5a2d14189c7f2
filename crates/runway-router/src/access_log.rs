//! The per-service JSON access log, written off the hot path: requests hand their entry
//! to a bounded channel and a writer thread formats and appends it to
//! `<dir>/<service id>.log`, rotating files by size. When the writer falls behind,
//! entries are dropped and counted rather than slowing requests down.
//!
//! Handing an entry over costs a request one compare-and-swap: while requests flow, the
//! writer polls the channel every [`POLL`] instead of sleeping in it, because a writer
//! asleep in the channel must be woken by a system call (a futex wake and a context
//! switch) on the request's thread for every line; that cost a third more CPU per
//! request. Only when nothing came for a while does it sleep in the channel again.

use crate::config::AccessLogConfig;
use crate::text::{HEX, push_decimal, push_ip};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, SystemTime};

/// How often the writer looks for entries while requests flow.
const POLL: Duration = Duration::from_millis(20);
/// Empty polls after which the writer sleeps in the channel until the next entry.
const IDLE_POLLS: u32 = 50;
/// The file buffer: lines are written in blocks of this size.
const FILE_BUFFER: usize = 64 * 1024;

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
    /// This request's failure ejected its instance from balancing.
    pub ejected: bool,
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
    /// The line being formatted (reused).
    line: Vec<u8>,
    /// The last second formatted, and its text up to the seconds.
    second: Option<(u64, String)>,
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

/// Appends `text` as a JSON string.
fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Ids, methods and most paths need no escaping.
    if bytes
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        clean = i + 1;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

fn push_optional(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_client(out: &mut Vec<u8>, client: SocketAddr) {
    out.push(b'"');
    let ip = client.ip().to_canonical();
    if ip.is_ipv6() {
        out.push(b'[');
        push_ip(out, ip);
        out.push(b']');
    } else {
        push_ip(out, ip);
    }
    out.push(b':');
    push_decimal(out, u64::from(client.port()));
    out.push(b'"');
}

impl Writer {
    fn new(config: AccessLogConfig) -> Self {
        Writer {
            config,
            files: HashMap::new(),
            line: Vec::with_capacity(512),
            second: None,
        }
    }

    fn run(mut self, rx: Receiver<Entry>) {
        let mut idle = 0;
        loop {
            let mut wrote = false;
            loop {
                match rx.try_recv() {
                    Ok(entry) => {
                        self.write(&entry);
                        wrote = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if wrote {
                self.flush();
                idle = 0;
            } else {
                idle += 1;
            }
            if idle < IDLE_POLLS {
                std::thread::sleep(POLL);
                continue;
            }
            // Quiet: sleep in the channel; the next request wakes the writer once.
            match rx.recv_timeout(Duration::from_secs(3600)) {
                Ok(entry) => {
                    self.write(&entry);
                    idle = 0;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
        }
    }

    fn flush(&mut self) {
        for open in self.files.values_mut() {
            let _ = open.file.flush();
        }
    }

    /// RFC 3339 in UTC, with the fraction of a second if there is one.
    fn push_time(&mut self, time: SystemTime) {
        let since = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let second = since.as_secs();
        if self.second.as_ref().is_none_or(|(s, _)| *s != second) {
            let text = time::OffsetDateTime::from_unix_timestamp(second as i64)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            // Always whole seconds here: "...:SSZ"; the fraction goes before the Z.
            let text = text.strip_suffix('Z').unwrap_or(&text).to_string();
            self.second = Some((second, text));
        }
        let prefix = self.second.as_ref().map_or("", |(_, t)| t.as_str());
        self.line.push(b'"');
        self.line.extend_from_slice(prefix.as_bytes());
        let nanos = since.subsec_nanos();
        if nanos > 0 {
            let mut digits = [0u8; 9];
            let mut n = nanos;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let len = 9 - digits.iter().rev().take_while(|d| **d == b'0').count();
            self.line.push(b'.');
            self.line.extend_from_slice(&digits[..len]);
        }
        self.line.extend_from_slice(b"Z\"");
    }

    /// Formats `entry` as one JSON object on a line.
    fn format(&mut self, entry: &Entry) {
        self.line.clear();
        self.line.extend_from_slice(b"{\"time\":");
        self.push_time(entry.time);
        let line = &mut self.line;
        line.extend_from_slice(b",\"service\":");
        push_str(line, &entry.service);
        line.extend_from_slice(b",\"revision\":");
        push_optional(line, entry.revision.as_deref());
        line.extend_from_slice(b",\"instance\":");
        push_optional(line, entry.instance.as_deref());
        line.extend_from_slice(b",\"method\":");
        push_str(line, entry.method.as_str());
        line.extend_from_slice(b",\"path\":");
        push_str(line, &entry.path);
        line.extend_from_slice(b",\"status\":");
        push_decimal(line, u64::from(entry.status));
        // Milliseconds to the microsecond, written as a decimal.
        let micros = entry.duration.as_micros().min(u128::from(u64::MAX)) as u64;
        line.extend_from_slice(b",\"duration_ms\":");
        push_decimal(line, micros / 1000);
        line.push(b'.');
        let frac = micros % 1000;
        line.push(b'0' + (frac / 100) as u8);
        line.push(b'0' + (frac / 10 % 10) as u8);
        line.push(b'0' + (frac % 10) as u8);
        line.extend_from_slice(b",\"bytes_in\":");
        push_decimal(line, entry.bytes_in);
        line.extend_from_slice(b",\"bytes_out\":");
        push_decimal(line, entry.bytes_out);
        line.extend_from_slice(b",\"request_id\":");
        push_str(line, entry.request_id.to_str().unwrap_or(""));
        line.extend_from_slice(b",\"client\":");
        push_client(line, entry.client);
        if let Some(error) = entry.error {
            line.extend_from_slice(b",\"error\":");
            push_str(line, error);
        }
        if entry.ejected {
            line.extend_from_slice(b",\"ejected\":true");
        }
        line.extend_from_slice(b"}\n");
    }

    fn write(&mut self, entry: &Entry) {
        self.format(entry);
        let text = std::mem::take(&mut self.line);
        if let Err(e) = self.append(&entry.service, &text) {
            tracing::warn!(service = %entry.service, error = %e, "cannot write the access log");
            self.files.remove(&entry.service);
        }
        self.line = text;
    }

    fn append(&mut self, service: &Arc<str>, text: &[u8]) -> std::io::Result<()> {
        let len = text.len() as u64;
        // Nearly always: the file is open and has room.
        if let Some(open) = self.files.get_mut(service)
            && (open.size == 0 || open.size + len <= self.config.max_bytes)
        {
            open.file.write_all(text)?;
            open.size += len;
            return Ok(());
        }
        let path = path_for(&self.config.dir, service);
        if !self.files.contains_key(service) {
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let size = file.metadata()?.len();
            self.files.insert(
                service.clone(),
                Open {
                    file: BufWriter::with_capacity(FILE_BUFFER, file),
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
                    file: BufWriter::with_capacity(FILE_BUFFER, file),
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
