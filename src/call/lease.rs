//! A call's billing lease, as the call engine holds it: reserved before the call is answered
//! (no answer without a grant), renewed every `billing.heartbeat_s` with the usage so far,
//! released with the final usage when the call ends. The grant always runs a little ahead of
//! the usage; when the account cannot cover more, the grant stops growing and the call must
//! end when it runs out, which is also what happens when renewals cannot reach the store.

use std::time::Duration;

use tokio::time::Instant;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::store::billing::LeaseRequest;
use crate::store::{Store, StoreError};

pub struct CallLease {
    store: Store,
    metrics: Arc<Metrics>,
    account: String,
    id: String,
    heartbeat: Duration,
    answered: Option<Instant>,
    granted_s: i64,
    final_units: bool,
}

impl CallLease {
    /// Reserves two heartbeats for a new call of `account`, valid for three (so one lost
    /// renewal does not end it).
    pub async fn reserve(
        store: &Store,
        metrics: &Arc<Metrics>,
        account: &str,
        call_id: &str,
        heartbeat: Duration,
    ) -> Result<CallLease, StoreError> {
        let grant = store
            .reserve(
                account,
                &request(heartbeat, Some(call_id)),
                Some(&key(call_id, "reserve")),
            )
            .await
            .inspect_err(|e| {
                if !matches!(e, StoreError::Insufficient) {
                    Metrics::inc(&metrics.lease_errors);
                }
            })?;
        Metrics::inc(&metrics.leases_reserved);
        if grant.lease.final_unit_indication {
            Metrics::inc(&metrics.leases_final_units);
        }
        tracing::info!(
            lease = %grant.lease.id,
            granted_s = grant.lease.granted_seconds,
            final_units = grant.lease.final_unit_indication,
            "billing lease reserved"
        );
        Ok(CallLease {
            store: store.clone(),
            metrics: metrics.clone(),
            account: account.to_string(),
            id: grant.lease.id,
            heartbeat,
            answered: None,
            granted_s: grant.lease.granted_seconds,
            final_units: grant.lease.final_unit_indication,
        })
    }

    /// The call was answered at `now`: usage counts from here.
    pub fn answered(&mut self, now: Instant) {
        self.answered = Some(now);
    }

    /// How often the lease is renewed.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seconds granted in all so far.
    pub fn granted_s(&self) -> i64 {
        self.granted_s
    }

    /// The account could not cover what the last renewal asked: no more will come.
    pub fn final_units(&self) -> bool {
        self.final_units
    }

    fn used_s(&self, now: Instant) -> i64 {
        self.answered.map_or(0, |a| {
            now.saturating_duration_since(a).as_millis().div_ceil(1000) as i64
        })
    }

    /// Reports the usage so far and asks for two more heartbeats. A renewal that fails
    /// leaves the grant as it was (the call ends when it runs out); a lease the store closed
    /// (expired while the store was unreachable) is an error the call ends on.
    pub async fn renew(&mut self, now: Instant) -> Result<(), StoreError> {
        let used = self.used_s(now);
        let key = key(&self.id, &format!("renew-{used}"));
        let req = request(self.heartbeat, None);
        let grant = self
            .store
            .renew(&self.account, &self.id, used, &req, Some(&key))
            .await
            .inspect_err(|_| Metrics::inc(&self.metrics.lease_errors))?;
        Metrics::inc(&self.metrics.leases_renewed);
        if grant.lease.final_unit_indication && !self.final_units {
            Metrics::inc(&self.metrics.leases_final_units);
        }
        self.granted_s = grant.lease.granted_seconds;
        self.final_units = grant.lease.final_unit_indication;
        Ok(())
    }

    /// Settles the call with its final usage; the settled lease, when the store took it.
    /// With `debt` (`billing.final_unit_action = "allow"`), usage beyond the grant is
    /// recorded as the account's debt.
    pub async fn release(self, now: Instant, debt: bool) -> Option<crate::store::billing::Lease> {
        let used = self.used_s(now);
        let key = key(&self.id, "release");
        let released = self
            .store
            .release(&self.account, &self.id, used, Some(&key))
            .await;
        match released {
            Ok(lease) if debt && used > lease.granted_seconds => {
                Metrics::inc(&self.metrics.leases_released);
                match self.store.record_debt(&self.account, &lease.id, used).await {
                    Ok(owed) => Some(owed),
                    Err(e) => {
                        Metrics::inc(&self.metrics.lease_errors);
                        tracing::warn!(lease = %lease.id, error = %e, used_s = used, "cannot record the call's debt");
                        Some(lease)
                    }
                }
            }
            Ok(lease) => {
                Metrics::inc(&self.metrics.leases_released);
                tracing::info!(
                    lease = %lease.id,
                    used_s = lease.used_seconds,
                    cost = lease.cost,
                    "billing lease released"
                );
                Some(lease)
            }
            // The sweeper settles it at the last reported usage plus one increment.
            Err(e) => {
                Metrics::inc(&self.metrics.lease_errors);
                tracing::warn!(lease = %self.id, error = %e, "cannot release the billing lease");
                None
            }
        }
    }
}

fn request(heartbeat: Duration, call_id: Option<&str>) -> LeaseRequest {
    let beat = heartbeat.as_secs().max(1) as i64;
    LeaseRequest {
        call_id: call_id.map(str::to_string),
        seconds: 2 * beat,
        validity_s: 3 * beat,
    }
}

/// Idempotency keys: a retried request (after a timeout) is not charged twice.
fn key(id: &str, what: &str) -> String {
    format!("call:{id}:{what}")
}
