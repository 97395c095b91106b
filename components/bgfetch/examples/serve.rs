//! Serves the benchmark routes on 127.0.0.1 until killed: `/gen1` (1 GiB), `/gen4` (4 GiB), `/gen8` (8 GiB) and
//! `/small/0` … `/small/999` (16 KiB each), generated, with Range support.
//!
//! `cargo run --release -p bgfetch --example serve -- [PORT]` (default 8089)

use bgfetch::server::{Server, benchmark_routes};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8089);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let routes = benchmark_routes();
    rt.block_on(async {
        let server = Server::start_on(&format!("127.0.0.1:{port}"), routes)
            .await
            .expect("bind");
        println!("serving on http://{}", server.addr());
        std::future::pending::<()>().await;
    });
}
