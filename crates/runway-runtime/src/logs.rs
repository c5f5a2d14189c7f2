//! Instance logs: the shim writes each line of the container's stdout and stderr to the
//! instance's `container.log`, rotated by size (`container.log.1`, `.2`, ...), in the
//! CRI log format kubelet uses (`<RFC 3339 time> <stdout|stderr> <F|P> <text>`, `P` for
//! a part of a longer line). Readers merge the files back into [`LogLine`]s, newest
//! instance first, and can follow them as they grow, across rotations.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The name of an instance's current log file.
pub const LOG_FILE: &str = "container.log";
/// Lines longer than this are written in parts.
const MAX_PART: usize = 16 * 1024;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line an instance wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the shim read it.
    pub time: SystemTime,
    pub instance_id: crate::InstanceId,
    pub stream: Stream,
    pub text: String,
}

/// Which lines to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub service: String,
    /// Only this instance's lines.
    pub instance: Option<crate::InstanceId>,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Keep reading as lines are written (and from instances that start later).
    pub follow: bool,
}

/// Lines as they are read; ends when everything asked for was read (never, when
/// following, until it is dropped).
#[derive(Debug)]
pub struct LogStream {
    rx: tokio::sync::mpsc::Receiver<LogLine>,
}

impl LogStream {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<LogLine>) -> LogStream {
        LogStream { rx }
    }

    /// The next line, or `None` at the end.
    pub async fn next(&mut self) -> Option<LogLine> {
        self.rx.recv().await
    }

    /// The underlying channel, for adapting into other stream types.
    pub fn into_receiver(self) -> tokio::sync::mpsc::Receiver<LogLine> {
        self.rx
    }
}

fn format_time(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// One record in the CRI format, newline-terminated.
pub fn format_record(time: SystemTime, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 48);
    out.extend_from_slice(format_time(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// A record read back: time, stream, whether it is partial, text.
pub fn parse_record(line: &str) -> Option<(SystemTime, Stream, bool, &str)> {
    let mut parts = line.splitn(4, ' ');
    let time = OffsetDateTime::parse(parts.next()?, &Rfc3339).ok()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some((time.into(), stream, partial, parts.next().unwrap_or("")))
}

/// Writes records to a log file, rotating it by size: `container.log` moves to
/// `container.log.1` (and so on up to `max_files - 1`, the oldest dropped).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Writes one line (without its newline) as one or more records.
    pub fn line(&mut self, stream: Stream, text: &[u8], time: SystemTime) -> io::Result<()> {
        let mut chunks = text.chunks(MAX_PART).peekable();
        if text.is_empty() {
            return self.record(&format_record(time, stream, false, b""));
        }
        while let Some(chunk) = chunks.next() {
            let partial = chunks.peek().is_some();
            self.record(&format_record(time, stream, partial, chunk))?;
        }
        Ok(())
    }

    /// Writes the start of a line that is not finished yet (a part record).
    pub fn part(&mut self, stream: Stream, text: &[u8], time: SystemTime) -> io::Result<()> {
        for chunk in text.chunks(MAX_PART) {
            self.record(&format_record(time, stream, true, chunk))?;
        }
        Ok(())
    }

    fn record(&mut self, record: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files > 1 {
            let _ = std::fs::remove_file(numbered(self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The log files of an instance directory, oldest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name
                .strip_prefix(LOG_FILE)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut out: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    let current = dir.join(LOG_FILE);
    if current.exists() {
        out.push(current);
    }
    out
}

/// Joins part records back into lines.
#[derive(Debug, Default)]
struct Assembler {
    pending: Option<(SystemTime, Stream, String)>,
}

impl Assembler {
    fn push(&mut self, record: &str) -> Option<(SystemTime, Stream, String)> {
        let (time, stream, partial, text) = parse_record(record)?;
        let (time, mut acc) = match self.pending.take() {
            Some((t, s, acc)) if s == stream => (t, acc),
            _ => (time, String::new()),
        };
        acc.push_str(text);
        if partial {
            self.pending = Some((time, stream, acc));
            None
        } else {
            Some((time, stream, acc))
        }
    }
}

/// An instance whose logs are read.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub id: crate::InstanceId,
    pub dir: PathBuf,
    /// Whether the instance may still write (followed) or has stopped.
    pub live: bool,
}

/// Where a followed file was read up to.
struct Cursor {
    file: BufReader<File>,
    inode: u64,
    assembler: Assembler,
    carry: String,
}

/// Reads `sources` (newest first) into `tx`; when following, keeps polling the live
/// ones and asks `more` for instances that started since. Runs on a blocking thread and
/// returns when the receiver is gone or, without `follow`, when all was read.
pub(crate) fn pump(
    sources: Vec<Source>,
    since: Option<SystemTime>,
    follow: bool,
    tx: tokio::sync::mpsc::Sender<LogLine>,
    more: impl Fn() -> Vec<Source>,
) {
    let send = |line: LogLine| -> bool {
        if since.is_some_and(|s| line.time < s) {
            return true;
        }
        tx.blocking_send(line).is_ok()
    };
    let mut cursors: Vec<(crate::InstanceId, PathBuf, Cursor)> = Vec::new();
    let mut seen: std::collections::HashSet<crate::InstanceId> = Default::default();
    for source in sources {
        seen.insert(source.id.clone());
        if !dump(&source, follow && source.live, &send, &mut cursors) {
            return;
        }
    }
    if !follow {
        return;
    }
    loop {
        if tx.is_closed() {
            return;
        }
        for source in more() {
            if seen.insert(source.id.clone()) && !dump(&source, true, &send, &mut cursors) {
                return;
            }
        }
        for (id, dir, cursor) in cursors.iter_mut() {
            if !follow_file(dir, cursor, &mut |c| drain(id, c, &send)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads what was added to the log in `dir` since `cursor`, across rotations, through
/// `drain`. Whether the receiver is still there.
fn follow_file(
    dir: &Path,
    cursor: &mut Cursor,
    drain: &mut impl FnMut(&mut Cursor) -> bool,
) -> bool {
    if !drain(cursor) {
        return false;
    }
    // Rotated: finish the old file through its handle, read the files rotated since
    // (several rotations may fall between two polls), then follow the newest.
    if std::fs::metadata(dir.join(LOG_FILE)).is_ok_and(|m| m.ino() != cursor.inode) {
        if !drain(cursor) {
            return false;
        }
        for (file, inode) in open_newer(dir, cursor.inode) {
            cursor.file = BufReader::new(file);
            cursor.inode = inode;
            if !drain(cursor) {
                return false;
            }
        }
    }
    true
}

/// The log files of `dir` newer than the one with inode `after` (all of them if it is
/// gone), opened, oldest first. The writer renames files while they are listed, so a
/// listing counts only if the files opened from it and a second listing agree with it.
fn open_newer(dir: &Path, after: u64) -> Vec<(File, u64)> {
    let listing = || -> Vec<(PathBuf, u64)> {
        files(dir)
            .into_iter()
            .filter_map(|p| {
                let ino = std::fs::metadata(&p).ok()?.ino();
                Some((p, ino))
            })
            .collect()
    };
    let mut opened = Vec::new();
    for _ in 0..100 {
        let before = listing();
        let newer = before
            .iter()
            .position(|(_, ino)| *ino == after)
            // Gone: rotated out, so older than every file left.
            .map_or(&before[..], |i| &before[i + 1..]);
        opened = newer
            .iter()
            .filter_map(|(p, ino)| {
                let f = File::open(p).ok()?;
                (f.metadata().ok()?.ino() == *ino).then_some((f, *ino))
            })
            .collect();
        if opened.len() == newer.len() && listing() == before {
            return opened;
        }
        std::thread::yield_now();
    }
    opened
}

/// One line a job wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLine {
    /// When the shim read it.
    pub time: SystemTime,
    pub stream: Stream,
    pub text: String,
}

/// Follows the log of the job in `dir` into `tx` from its start, until `finished` says
/// that the job's shim exited (then everything it wrote is in the files) and the rest is
/// read, or the receiver is gone. Runs on a blocking thread.
pub(crate) fn tail_job(
    dir: &Path,
    tx: tokio::sync::mpsc::Sender<JobLine>,
    finished: impl Fn() -> bool,
) {
    // From the oldest file: the job may have written (and rotated) before this starts.
    // The cursor starts on an empty handle that is no log file, so the first poll reads
    // every file there is.
    if OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(dir.join(LOG_FILE))
        .is_err()
    {
        return;
    }
    let Ok(empty) = File::open("/dev/null") else {
        return;
    };
    let mut cursor = Cursor {
        file: BufReader::new(empty),
        inode: 0,
        assembler: Assembler::default(),
        carry: String::new(),
    };
    let mut read = |c: &mut Cursor| {
        drain_records(c, &mut |time, stream, text| {
            tx.blocking_send(JobLine { time, stream, text }).is_ok()
        })
    };
    loop {
        if tx.is_closed() {
            return;
        }
        // Checked before reading, so that the last read comes after the shim's end.
        let done = finished();
        if !follow_file(dir, &mut cursor, &mut read) || done {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends every line of an instance's files; with `keep`, leaves a cursor at the end of
/// the current file. Whether the receiver is still there.
fn dump(
    source: &Source,
    keep: bool,
    send: &impl Fn(LogLine) -> bool,
    cursors: &mut Vec<(crate::InstanceId, PathBuf, Cursor)>,
) -> bool {
    let files = files(&source.dir);
    let current = source.dir.join(LOG_FILE);
    let mut assembler = Assembler::default();
    for path in &files {
        let Ok(file) = File::open(path) else { continue };
        let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
        let mut cursor = Cursor {
            file: BufReader::new(file),
            inode,
            assembler: std::mem::take(&mut assembler),
            carry: String::new(),
        };
        if !drain(&source.id, &mut cursor, send) {
            return false;
        }
        if keep && *path == current {
            cursors.push((source.id.clone(), source.dir.clone(), cursor));
            return true;
        }
        assembler = cursor.assembler;
    }
    if keep && !files.contains(&current) {
        // Nothing written yet: follow the file once it appears.
        if let Ok(file) = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&current)
        {
            let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
            let mut reader = BufReader::new(file);
            let _ = reader.seek(SeekFrom::Start(0));
            cursors.push((
                source.id.clone(),
                source.dir.clone(),
                Cursor {
                    file: reader,
                    inode,
                    assembler,
                    carry: String::new(),
                },
            ));
        }
    }
    true
}

/// Sends the complete lines available from a cursor. Whether the receiver is still there.
fn drain(id: &crate::InstanceId, cursor: &mut Cursor, send: &impl Fn(LogLine) -> bool) -> bool {
    drain_records(cursor, &mut |time, stream, text| {
        send(LogLine {
            time,
            instance_id: id.clone(),
            stream,
            text,
        })
    })
}

/// Passes the complete lines available from a cursor to `send`. Whether it wants more.
fn drain_records(
    cursor: &mut Cursor,
    send: &mut impl FnMut(SystemTime, Stream, String) -> bool,
) -> bool {
    loop {
        let mut buf = Vec::new();
        match cursor.file.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
        let chunk = String::from_utf8_lossy(&buf);
        if !chunk.ends_with('\n') {
            // A record being written: keep it until its newline arrives.
            cursor.carry.push_str(&chunk);
            continue;
        }
        let record = std::mem::take(&mut cursor.carry) + chunk.trim_end_matches('\n');
        if let Some((time, stream, text)) = cursor.assembler.push(&record)
            && !send(time, stream, text)
        {
            return false;
        }
    }
}

#[cfg(test)]
mod tests;
