use super::*;
use http_body_util::Full;
use std::convert::Infallible;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// An application that answers `hello` after sleeping for the milliseconds in its path.
fn app(
    client: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
> + Send
+ Sync
+ 'static {
    hyper::service::service_fn(move |req: Request<Incoming>| async move {
        let ms: u64 = req.uri().path()[1..].parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
            "hello {}",
            client.ip()
        )))))
    })
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("the listener stops")
            .unwrap()
            .unwrap();
    }
}

async fn start(caps: ConnectionCaps) -> Running {
    let config = RouterConfig {
        header_read_timeout: Duration::from_millis(400),
        shutdown_grace: Duration::from_secs(2),
        ..RouterConfig::default()
    };
    let mut registry = Registry::default();
    let server = AppServer::new(
        "test",
        config,
        caps,
        ListenerMetrics::register(&mut registry),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(listener, None, app, async move {
                let _ = stopped.await;
            })
            .await
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closed `stream` within `wait` (read returns end of file or an
/// error) rather than keeping it open.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn get(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("hello") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_after_the_header_read_timeout_but_slow_answers_are_not() {
    let server = start(ConnectionCaps::default()).await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    // A handler that takes longer than the header read timeout is not cut off, and the
    // connection is kept alive for the next request.
    let answer = get(&mut slow, "/900").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed_within(&mut half, Duration::from_secs(2)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    assert!(get(&mut slow, "/0").await.contains("hello 127.0.0.1"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_an_address_cap_are_closed_and_others_are_served() {
    let caps = ConnectionCaps {
        total: 5,
        per_address: 3,
    };
    let server = start(caps).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 1], server.addr).await);
    }
    // One address's fourth connection is closed at once, before it sends anything.
    let mut fourth = connect_from([127, 0, 0, 1], server.addr).await;
    assert!(closed_within(&mut fourth, Duration::from_millis(300)).await);
    // Another address is served meanwhile.
    let mut other = connect_from([127, 0, 0, 2], server.addr).await;
    assert!(get(&mut other, "/0").await.contains("hello 127.0.0.2"));
    // The listener's cap in all: two more places, then none.
    let _fifth = connect_from([127, 0, 0, 3], server.addr).await;
    let mut sixth = connect_from([127, 0, 0, 4], server.addr).await;
    assert!(closed_within(&mut sixth, Duration::from_millis(300)).await);
    // A connection that ends gives its place back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from([127, 0, 0, 1], server.addr).await;
    assert!(get(&mut again, "/0").await.contains("hello 127.0.0.1"));
    drop(held);
    server.stop().await;
}

#[test]
fn ipv6_clients_are_counted_by_their_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(address_key(a), address_key(b));
    assert_ne!(address_key(a), address_key(c));
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
}
