use super::*;
use std::time::UNIX_EPOCH;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn records_round_trip_in_the_cri_format() {
    let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    let r = format_record(t, Stream::Stderr, false, b"boom: it broke");
    assert_eq!(
        String::from_utf8(r.clone()).unwrap(),
        "2023-11-14T22:13:20.123456789Z stderr F boom: it broke\n"
    );
    let line = String::from_utf8(r).unwrap();
    let (time, stream, partial, text) = parse_record(line.trim_end()).unwrap();
    assert_eq!(
        (time, stream, partial, text),
        (t, Stream::Stderr, false, "boom: it broke")
    );
    assert!(parse_record("garbage").is_none());
    assert!(parse_record("2023-11-14T22:13:20Z stdin F x").is_none());
}

#[test]
fn the_writer_rotates_by_size_and_keeps_a_bounded_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG_FILE);
    let mut w = LogWriter::open(&path, 1024, 3).unwrap();
    for i in 0..100 {
        w.line(
            Stream::Stdout,
            format!("line {i:03} {}", "x".repeat(40)).as_bytes(),
            at(i),
        )
        .unwrap();
    }
    let files = files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(files.last().unwrap(), &path);
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 1024);
    }
    // The newest line is in the current file, the oldest were dropped.
    let current = std::fs::read_to_string(&path).unwrap();
    assert!(current.contains("line 099"));
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!all.contains("line 000"));
}

#[test]
fn long_lines_are_split_into_parts_and_joined_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open(&dir.path().join(LOG_FILE), 1 << 20, 2).unwrap();
    let long = "y".repeat(MAX_PART * 2 + 10);
    w.line(Stream::Stdout, long.as_bytes(), at(5)).unwrap();
    w.line(Stream::Stderr, b"short", at(6)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let id = crate::InstanceId::new();
    pump(
        vec![Source {
            id: id.clone(),
            dir: dir.path().to_path_buf(),
            live: false,
        }],
        None,
        false,
        tx,
        Vec::new,
    );
    let first = rx.try_recv().unwrap();
    assert_eq!(first.text, long);
    assert_eq!(first.time, at(5));
    let second = rx.try_recv().unwrap();
    assert_eq!(
        (second.text.as_str(), second.stream),
        ("short", Stream::Stderr)
    );
    assert!(rx.try_recv().is_err());
}

#[test]
fn reading_spans_rotated_files_in_order_and_filters_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open(&dir.path().join(LOG_FILE), 1024, 5).unwrap();
    for i in 0..60 {
        w.line(
            Stream::Stdout,
            format!("n{i:02} {}", "z".repeat(30)).as_bytes(),
            at(100 + i),
        )
        .unwrap();
    }
    let read = |since| {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
        pump(
            vec![Source {
                id: crate::InstanceId::new(),
                dir: dir.path().to_path_buf(),
                live: false,
            }],
            since,
            false,
            tx,
            Vec::new,
        );
        let mut out = Vec::new();
        while let Ok(l) = rx.try_recv() {
            out.push(l);
        }
        out
    };
    let all = read(None);
    let numbers: Vec<u64> = all.iter().map(|l| l.text[1..3].parse().unwrap()).collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(numbers, sorted, "oldest file first");
    assert_eq!(*numbers.last().unwrap(), 59);
    let recent = read(Some(at(150)));
    assert!(recent.iter().all(|l| l.time >= at(150)));
    assert_eq!(recent.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn following_reads_new_lines_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG_FILE);
    let mut w = LogWriter::open(&path, 1024, 3).unwrap();
    w.line(Stream::Stdout, b"before", at(1)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
    let source = Source {
        id: crate::InstanceId::new(),
        dir: dir.path().to_path_buf(),
        live: true,
    };
    let reader = std::thread::spawn(move || pump(vec![source], None, true, tx, Vec::new));
    async fn next(rx: &mut tokio::sync::mpsc::Receiver<LogLine>) -> LogLine {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a line within 10 s")
            .expect("the stream is open")
    }
    assert_eq!(next(&mut rx).await.text, "before");
    // Enough to rotate twice (not three times: the oldest file would be gone before the
    // reader polls); every line arrives, in order.
    for i in 0..30 {
        w.line(
            Stream::Stdout,
            format!("after {i:02} {}", "w".repeat(40)).as_bytes(),
            at(2),
        )
        .unwrap();
    }
    for i in 0..30 {
        let line = next(&mut rx).await.text;
        assert!(line.starts_with(&format!("after {i:02}")), "{i}: {line}");
    }
    drop(rx);
    reader.join().unwrap();
}

#[test]
fn a_job_tail_follows_rotations_and_ends_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tail = {
        let dir = dir.path().to_path_buf();
        let finished = finished.clone();
        std::thread::spawn(move || {
            tail_job(&dir, tx, || {
                finished.load(std::sync::atomic::Ordering::SeqCst)
            })
        })
    };
    // Enough files that a line would be lost if the tail did not keep up across them.
    let mut w = LogWriter::open(&dir.path().join(LOG_FILE), 4096, 50).unwrap();
    let mut seen = Vec::new();
    for i in 0..400u64 {
        let stream = if i % 7 == 0 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        w.line(
            stream,
            format!("line {i} {}", "z".repeat(60)).as_bytes(),
            at(i),
        )
        .unwrap();
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
    }
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    while let Some(line) = rx.blocking_recv() {
        seen.push(line);
    }
    tail.join().unwrap();
    assert!(files(dir.path()).len() > 5, "the log rotated");
    let nums: Vec<&str> = seen
        .iter()
        .map(|l| l.text.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(seen.len(), 400, "{nums:?}");
    for (i, line) in seen.iter().enumerate() {
        assert!(line.text.starts_with(&format!("line {i} ")), "{line:?}");
        assert_eq!(line.time, at(i as u64));
        assert_eq!(line.stream == Stream::Stderr, i % 7 == 0);
    }
}
