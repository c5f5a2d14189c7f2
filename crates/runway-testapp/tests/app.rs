//! The test app as a process: its routes over real connections, the WebSocket echo
//! included, and its crash exit code.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct App {
    child: Child,
    port: u16,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(env: &[(&str, &str)]) -> App {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runway-testapp"))
        .env("PORT", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    App { child, port }
}

fn get(app: &App, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
}

#[test]
fn routes_answer() {
    let app = start(&[("GREETING", "hi \"there\"")]);
    let (status, body) = get(&app, "/");
    assert_eq!(status, 200);
    assert!(body.starts_with("hello from runway-testapp on "));
    assert_eq!(get(&app, "/healthz").0, 200);
    let (_, env) = get(&app, "/env");
    assert!(env.contains(r#""GREETING":"hi \"there\"""#), "{env}");
    assert_eq!(get(&app, "/sleep?ms=10").1, "slept 10 ms\n");
    assert_eq!(get(&app, "/nope").0, 404);
    let dir = std::env::temp_dir().join(format!("testapp-write-{}", std::process::id()));
    let file = dir.join("f");
    std::fs::create_dir_all(&dir).unwrap();
    let path = file.display().to_string();
    assert_eq!(
        get(&app, &format!("/write?path={path}&mb=2")).1,
        "wrote 2 MiB\n"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 2 << 20);
    assert_eq!(get(&app, &format!("/read?path={path}")).1.len(), 2 << 20);
    let (status, body) = get(&app, &format!("/write?path={}/no/such/f", dir.display()));
    assert_eq!(status, 507, "{body}");
    std::fs::remove_dir_all(&dir).unwrap();
    let unhealthy = start(&[("UNHEALTHY", "1")]);
    assert_eq!(get(&unhealthy, "/healthz").0, 500);
}

#[test]
fn websocket_echoes_frames() {
    let app = start(&[]);
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    // A masked text frame, as a client sends it.
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut echo = [0u8; 7];
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x05hello");
    // Close: echoed, then the connection ends.
    s.write_all(&[0x88, 0x80, 0, 0, 0, 0]).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, [0x88, 0x00]);
}

#[test]
fn crash_exits_with_code_3() {
    let mut app = start(&[]);
    let (status, _) = get(&app, "/crash");
    assert_eq!(status, 200);
    assert_eq!(app.child.wait().unwrap().code(), Some(3));
}
