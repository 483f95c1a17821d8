//! The admin endpoint under clients that open connections and never finish a request: they
//! are cut at the header timeout, the connection count is bounded, and health checks are
//! answered again once they are gone.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zone_shell::admin::{self, HEADER_TIMEOUT, MAX_CONNECTIONS};
use zone_shell::metrics::Metrics;

use crate::support::http_get;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_at_the_header_timeout_and_bounded_in_number() {
    let _live = crate::support::live(module_path!());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        admin::router(Arc::new(Metrics::new()), Vec::new(), None),
        async {
            let _ = stopped.await;
        },
    ));
    let port2 = port;
    let outcome = tokio::task::spawn_blocking(move || {
        let port = port2;
        assert_eq!(http_get(port, "/healthz").map(|(c, _)| c), Some(200));
        // More half-sent requests than the server serves at once.
        let mut slow: Vec<TcpStream> = (0..MAX_CONNECTIONS + 16)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
                s
            })
            .collect();
        // Every one of them is closed by the server: those over the limit at once, the rest
        // at the header timeout. None is answered.
        let deadline = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(10);
        for s in &mut slow {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(
                        !text.contains(" 200 "),
                        "a half-sent request was answered: {text}"
                    );
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                Err(e) => panic!("a slow connection was still open after the header timeout: {e}"),
            }
        }
        http_get(port, "/healthz").map(|(c, _)| c)
    })
    .await
    .unwrap();
    assert_eq!(
        outcome,
        Some(200),
        "answered again once the slow clients are gone"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
