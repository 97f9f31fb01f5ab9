//! A bare hyper HTTP/1.1 hello-world on one tokio current-thread runtime:
//! the baseline the shop benchmark compares one worker against (same event
//! loop model, no routing, no store). Usage: `hello [ADDR]` (default
//! 127.0.0.1:0, a free port, printed on stderr). Not for anything but benchmarks.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string())
        .parse()
        .context("the argument must be an address like 127.0.0.1:0")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        // Port 0 picks a free port; the script reads the real one from here.
        eprintln!("hello listening on {}", listener.local_addr().context("local address")?);
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from_static(b"Hello, world!\n")))
                            .unwrap_or_default(),
                    )
                });
                let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
