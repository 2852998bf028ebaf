//! The operator's Kubernetes client against the real kube-apiserver: it
//! works (requests go through with the kubeconfig's TLS and credentials),
//! and after a burst of requests it keeps only a few idle connections,
//! briefly, where kube's default client keeps every connection of the
//! burst open for 90 s (connections held at rest, issue 13).
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use delenda::metrics::{ApiPool, api_client};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

/// Requests sent at once in a burst.
const BURST: usize = 16;

/// The inodes of this process's sockets.
fn own_sockets() -> BTreeSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?.to_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// This process's established TCP connections to `port` on the loopback.
fn connections_to(port: u16) -> usize {
    let mine = own_sockets();
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // remote address "HEX:PORT", state "01" is ESTABLISHED, inode the tenth field.
            let remote_port = f[2].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode: u64 = f[9].parse().unwrap_or(0);
            if remote_port == Some(port) && f[3] == "01" && mine.contains(&inode) {
                n += 1;
            }
        }
    }
    n
}

async fn burst(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let lists = (0..BURST).map(|_| {
        let api = api.clone();
        async move { api.list(&ListParams::default().limit(1)).await }
    });
    for result in futures::future::join_all(lists).await {
        let list = result.expect("the client lists namespaces through the API server");
        assert!(!list.items.is_empty(), "the API server has namespaces");
    }
}

/// Waits up to `secs` for `ok` to hold of the connection count; the last count.
async fn connections_become(port: u16, secs: u64, ok: impl Fn(usize) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let n = connections_to(port);
        if ok(n) || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn after_a_burst_the_client_keeps_few_idle_connections_and_closes_them_soon() {
    let config = support::kube_config().await;
    let port = config.cluster_url.port_u16().expect("the test API server's URL names its port");
    let before = connections_to(port);
    assert_eq!(before, 0, "no connection of this test process to the API server yet");

    // Ours: two idle connections at most, for two seconds.
    let pool = ApiPool { max_idle: 2, idle_timeout: Duration::from_secs(2) };
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = counted.clone();
    let ours = api_client(config.clone(), pool, move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    burst(&ours).await;
    assert_eq!(counted.load(std::sync::atomic::Ordering::Relaxed), BURST, "every request passed the layer once");
    let kept = connections_become(port, 5, |n| n <= 2).await;
    assert!(kept <= 2, "after the burst at most max_idle (2) connections stay open, found {kept}");
    let idle = connections_become(port, 10, |n| n == 0).await;
    assert_eq!(idle, 0, "idle connections are closed after the idle timeout (2 s)");
    drop(ours);

    // kube's default client, the same burst: it keeps more than ours may,
    // so the burst did open more connections than the pool keeps.
    let default = kube::Client::try_from(config).unwrap();
    burst(&default).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kube_kept = connections_to(port);
    assert!(kube_kept > 2, "kube's default pool keeps a burst's connections ({kube_kept}): the burst opened several");
}
