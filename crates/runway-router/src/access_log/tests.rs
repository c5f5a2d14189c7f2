use super::*;

fn entry(service: &str, path: &str) -> Entry {
    Entry {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        service: service.into(),
        revision: Some("rev".into()),
        instance: None,
        method: http::Method::POST,
        path: path.to_string(),
        status: 503,
        duration: Duration::from_millis(12),
        bytes_in: 3,
        bytes_out: 0,
        request_id: http::HeaderValue::from_static("abc"),
        client: "127.0.0.1:5000".parse().unwrap(),
        error: Some("queue_full"),
        ejected: false,
    }
}

#[test]
fn lines_are_json_per_service_and_files_rotate_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AccessLogConfig::new(dir.path());
    config.max_bytes = 1000;
    config.keep = 2;
    let mut writer = Writer::new(config);
    writer.write(&entry("svc", "/a"));
    writer.write(&entry("../../etc/x", "/b"));
    for open in writer.files.values_mut() {
        open.file.flush().unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("svc.log")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["time"], "2023-11-14T22:13:20Z");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["status"], 503);
    assert_eq!(line["duration_ms"], 12.0);
    assert_eq!(line["error"], "queue_full");
    assert!(line["instance"].is_null());
    // A hostile id stays inside the directory.
    assert!(dir.path().join("______etc_x.log").exists());

    for i in 0..40 {
        writer.write(&entry("svc", &format!("/{i}")));
    }
    for open in writer.files.values_mut() {
        open.file.flush().unwrap();
    }
    let current = std::fs::metadata(dir.path().join("svc.log")).unwrap().len();
    assert!(current <= 1000, "{current}");
    assert!(dir.path().join("svc.log.1").exists());
    assert!(dir.path().join("svc.log.2").exists());
    assert!(
        !dir.path().join("svc.log.3").exists(),
        "only `keep` rotated files"
    );
}

#[test]
fn a_full_buffer_drops_and_counts_instead_of_blocking() {
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let log = AccessLog {
        tx,
        dropped: Counter::default(),
    };
    log.record(entry("svc", "/1"));
    log.record(entry("svc", "/2"));
    log.record(entry("svc", "/3"));
    assert_eq!(log.dropped.get(), 2);
}

#[test]
fn lines_escape_what_json_needs_and_keep_time_and_duration_exact() {
    let mut writer = Writer::new(AccessLogConfig::new("/nonexistent"));
    let mut entry = entry("svc", "/a\"b\\c\u{1}d\té/ü");
    entry.time = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
    entry.duration = Duration::from_micros(1_234_567);
    entry.client = "[2001:db8::1]:443".parse().unwrap();
    entry.error = None;
    writer.format(&entry);
    let text = String::from_utf8(writer.line.clone()).unwrap();
    assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(line["path"], "/a\"b\\c\u{1}d\té/ü");
    assert_eq!(line["time"], "2023-11-14T22:13:20.12Z");
    assert_eq!(line["duration_ms"], 1234.567);
    assert_eq!(line["client"], "[2001:db8::1]:443");
    assert_eq!(line["revision"], "rev");
    assert!(line.get("error").is_none());
    // The next second is formatted afresh; the same one comes from the cache.
    entry.time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001);
    writer.format(&entry);
    let line: serde_json::Value = serde_json::from_slice(&writer.line).unwrap();
    assert_eq!(line["time"], "2023-11-14T22:13:21Z");
    entry.time = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_001, 5);
    writer.format(&entry);
    let line: serde_json::Value = serde_json::from_slice(&writer.line).unwrap();
    assert_eq!(line["time"], "2023-11-14T22:13:21.000000005Z");
}

#[test]
fn the_writer_writes_every_entry_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let dropped = Counter::default();
    let log = AccessLog::start(AccessLogConfig::new(dir.path()), dropped.clone()).unwrap();
    for i in 0..1000 {
        log.record(entry("svc", &format!("/{i}")));
    }
    let path = dir.path().join("svc.log");
    let lines = || {
        std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    for _ in 0..500 {
        if lines() == 1000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lines() + dropped.get() as usize, 1000);
    assert_eq!(dropped.get(), 0);
}
