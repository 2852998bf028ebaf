//! Leader election with fencing. One instance holds the Lease and is the
//! only one that deletes. Unlike a lease library that keeps believing it
//! leads while its renewals fail, this one measures its hold by its own
//! monotonic clock: the hold ends `duration` after the last renewal the API
//! server accepted, and the instance counts itself leader only while more
//! than `margin` of that is left. A process paused past its lease
//! (SIGSTOP, a long GC-like stall, a partition) therefore finds, the moment
//! it runs again and before its next batch, that it no longer leads, even
//! if no timer of its own has fired yet.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

/// How a lease is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This instance's identity (the pod's name).
    pub identity: String,
    /// How long a renewal holds the lease.
    pub duration: Duration,
    /// Stop counting as leader when less than this is left of the hold.
    pub margin: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How long a stopping instance tries to give the lease up before it
    /// leaves it to expire.
    pub release_within: Duration,
}

impl LeaseConfig {
    /// A 15 s lease renewed every 3 s, given up with 5 s to spare; a
    /// stopping instance gives it back within 3 s.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            margin: Duration::from_secs(5),
            renew_every: Duration::from_secs(3),
            release_within: Duration::from_secs(3),
        }
    }
}

/// Whether this instance may act, by its own clock.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    held_until: Arc<Mutex<Option<(Instant, Duration)>>>,
}

impl Fence {
    /// A fence that always holds: for an instance that runs alone, without
    /// election.
    pub fn always() -> Self {
        Self {
            held_until: Arc::new(Mutex::new(Some((
                Instant::now() + Duration::from_secs(u64::MAX / 4),
                Duration::ZERO,
            )))),
        }
    }

    /// Whether the lease is held with more than the margin left.
    pub fn holds(&self) -> bool {
        self.held_until.lock().expect("fence lock").is_some_and(|(until, margin)| Instant::now() + margin < until)
    }

    fn renewed(&self, at: Instant, config: &LeaseConfig) {
        *self.held_until.lock().expect("fence lock") = Some((at + config.duration, config.margin));
    }

    fn release(&self) {
        *self.held_until.lock().expect("fence lock") = None;
    }
}

/// The other holder's record as last seen, and when we saw it change, by
/// our own clock: a lease is expired when its record has not changed for
/// its duration, whatever the clocks of the two machines say.
type Seen = Option<(String, Instant)>;

/// One attempt to take or renew the lease: whether it is ours now.
async fn try_hold(
    api: &Api<Lease>,
    config: &LeaseConfig,
    ours_before: bool,
    seen: &mut Seen,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let micro = MicroTime(now);
    let seconds = config.duration.as_secs() as i32;
    match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(config.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(micro.clone()),
                    renew_time: Some(micro),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let ours = holder == config.identity;
            let record = format!("{holder}@{:?}", spec.renew_time.as_ref().map(|t| t.0));
            let length = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
            let changed_at = match seen {
                Some((r, at)) if *r == record => *at,
                _ => {
                    let at = Instant::now();
                    *seen = Some((record, at));
                    at
                }
            };
            let expired = holder.is_empty() || spec.renew_time.is_none() || changed_at.elapsed() > length;
            if !ours && !expired {
                return Ok(false);
            }
            if !ours || !ours_before {
                spec.acquire_time = Some(micro.clone());
                if !ours {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
            }
            spec.holder_identity = Some(config.identity.clone());
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(micro);
            // The resourceVersion read makes this a compare-and-swap: of two
            // instances racing for an expired lease, one wins.
            match api.replace(&config.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up at once, so the next instance need not wait for it
/// to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&config.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = api.replace(&config.name, &PostParams::default(), &lease).await;
    }
}

/// A running election: whether this instance leads, and its fence.
pub struct Election {
    /// True while this instance leads.
    pub leading: watch::Receiver<bool>,
    /// The fence every delete checks.
    pub fence: Fence,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts campaigning for the lease.
    pub fn start(client: Client, config: LeaseConfig) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let fence = Fence::default();
        let (tx, leading) = watch::channel(false);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task_fence = fence.clone();
        let task = tokio::spawn(async move {
            let mut ours = false;
            let mut seen: Seen = None;
            loop {
                let attempt = Instant::now();
                // An API server that stops answering must not hold a stop:
                // an attempt cut short is judged by `release` below.
                let outcome = tokio::select! {
                    outcome = try_hold(&api, &config, ours, &mut seen) => outcome,
                    _ = &mut stopped => break,
                };
                match outcome {
                    Ok(true) => {
                        task_fence.renewed(attempt, &config);
                        ours = true;
                    }
                    Ok(false) => {
                        if ours {
                            tracing::warn!(lease = %config.name, "another instance holds the lease now");
                        }
                        task_fence.release();
                        ours = false;
                    }
                    Err(e) => tracing::warn!(lease = %config.name, error = %e, "could not renew the lease"),
                }
                // Leading only while the hold, by our own clock, has margin left.
                let holds = task_fence.holds();
                if !holds {
                    ours = false;
                }
                tx.send_if_modified(|l| std::mem::replace(l, holds) != holds);
                tokio::select! {
                    _ = tokio::time::sleep(config.renew_every) => {}
                    _ = &mut stopped => break,
                }
            }
            task_fence.release();
            let _ = tx.send(false);
            // Whether the lease is ours is read again: an attempt cut short
            // by the stop may have taken it. Bounded, so a stop never waits
            // on an API server that does not answer; a lease left held
            // expires by itself after its duration.
            if tokio::time::timeout(config.release_within, release(&api, &config)).await.is_err() {
                tracing::warn!(lease = %config.name, "could not give the lease up in time: it expires by itself");
            }
        });
        Self { leading, fence, stop: Some(stop), task }
    }

    /// Stops campaigning and gives the lease up.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_holds_only_with_margin_left_by_the_monotonic_clock() {
        let config = LeaseConfig {
            duration: Duration::from_millis(200),
            margin: Duration::from_millis(50),
            ..LeaseConfig::new("l", "ns", "me")
        };
        let fence = Fence::default();
        assert!(!fence.holds(), "not held before the first renewal");
        fence.renewed(Instant::now(), &config);
        assert!(fence.holds());
        std::thread::sleep(Duration::from_millis(160));
        assert!(!fence.holds(), "less than the margin left: no longer leading");
        fence.renewed(Instant::now(), &config);
        assert!(fence.holds());
        fence.release();
        assert!(!fence.holds());
        assert!(Fence::always().holds());
    }

    /// A server that takes connections and never answers: what a stalled
    /// or partitioned API server looks like from here, and what a real one
    /// cannot be made to do on demand.
    async fn silent_server() -> (Client, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: http::Uri = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        (Client::try_from(kube::Config::new(url)).unwrap(), held)
    }

    #[tokio::test]
    async fn a_stop_does_not_wait_on_an_api_server_that_never_answers() {
        let (client, held) = silent_server().await;
        let config = LeaseConfig { release_within: Duration::from_millis(300), ..LeaseConfig::new("l", "ns", "me") };
        let election = Election::start(client, config);
        // The first attempt to take the lease is in flight, unanswered.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!*election.leading.borrow() && !election.fence.holds());
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), election.stop()).await.expect("the election stops");
        assert!(started.elapsed() < Duration::from_secs(2), "stopped after {:?}", started.elapsed());
        held.abort();
    }
}
