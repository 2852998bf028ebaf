//! The controller binary serves /healthz, /readyz and /metrics, against the
//! real kube-apiserver.
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let code = response.status().as_u16();
    Some((code, response.text().await.ok()?))
}

#[tokio::test]
async fn the_controller_serves_health_readiness_and_metrics() {
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "http").await;
    let port = free_port();
    let _process = Process(
        Command::new(env!("CARGO_BIN_EXE_delenda"))
            .args([
                "controller",
                "--namespace",
                &ns,
                "--lease-namespace",
                &ns,
                "--http-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", support::setting("KUBECONFIG", "kube-apiserver"))
            .env("POD_NAME", format!("http-test-{ns}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the controller starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut metrics = String::new();
    while tokio::time::Instant::now() < deadline {
        if let (Some((200, _)), Some((200, ready)), Some((200, m))) = (
            get(&format!("{base}/healthz")).await,
            get(&format!("{base}/readyz")).await,
            get(&format!("{base}/metrics")).await,
        ) {
            assert_eq!(ready, "ready");
            metrics = m;
            if metrics.contains("delenda_leader 1") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(metrics.contains("delenda_leader 1"), "the instance never reported leading: {metrics}");
    // Families without samples yet (runs by outcome) are not listed.
    assert!(metrics.contains("# TYPE delenda_policy_run_duration_seconds histogram"), "{metrics}");
    assert!(metrics.contains("delenda_erasure_requests_overdue 0"), "{metrics}");
}
