//! The store on both backends: SQLite always, PostgreSQL when `PARLEY_TEST_DATABASE_URL`
//! names one (each run in a schema of its own, dropped at the end).

use parley::store::accounts::{Scope, OPERATOR_ACCOUNT};
use parley::store::{Store, StoreError};

mod support;
use support::stores::on_each_backend;

#[tokio::test]
async fn the_first_start_makes_one_admin_key_that_authenticates() {
    on_each_backend(|store, _| async move {
        let key = store.bootstrap(None).await.unwrap().expect("a key is made");
        assert!(key.starts_with("pk_"));
        assert_eq!(store.bootstrap(None).await.unwrap(), None, "only once");
        let who = store.authenticate(&key).await.unwrap().expect("valid");
        assert_eq!(who.account_id, OPERATOR_ACCOUNT);
        assert_eq!(who.scope, Scope::Admin);
        assert!(who.operator);
        // A wrong secret for a real id, an unknown id, garbage: all refused alike.
        // The last character changed to another one (a fixed replacement would sometimes be
        // the same character, and the "wrong" key then the right one).
        let last = if key.ends_with('x') { 'y' } else { 'x' };
        let wrong = format!("{}{last}", &key[..key.len() - 1]);
        assert_eq!(store.authenticate(&wrong).await.unwrap(), None);
        assert_eq!(
            store.authenticate("pk_nothere1234_abc").await.unwrap(),
            None
        );
        assert_eq!(store.authenticate("").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_configured_admin_key_replaces_the_previous_one() {
    on_each_backend(|store, _| async move {
        store
            .bootstrap(Some("first-configured-key-0123456789"))
            .await
            .unwrap();
        assert!(store
            .authenticate("first-configured-key-0123456789")
            .await
            .unwrap()
            .is_some());
        store
            .bootstrap(Some("second-configured-key-0123456789"))
            .await
            .unwrap();
        assert_eq!(
            store
                .authenticate("first-configured-key-0123456789")
                .await
                .unwrap(),
            None
        );
        let who = store
            .authenticate("second-configured-key-0123456789")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who.scope, Scope::Admin);
    })
    .await;
}

#[tokio::test]
async fn keys_belong_to_one_account_and_revoked_keys_stop_working() {
    on_each_backend(|store, _| async move {
        let a = store.create_account("Clinic A").await.unwrap();
        let b = store.create_account("Clinic B").await.unwrap();
        let (listed, key_a) = store
            .create_key(&a.id, "backend", Scope::Write)
            .await
            .unwrap();
        assert!(listed.prefix.ends_with('…') && !listed.prefix.contains(&key_a[16..]));
        let who = store.authenticate(&key_a).await.unwrap().unwrap();
        assert_eq!(
            (who.account_id.as_str(), who.scope, who.operator),
            (a.id.as_str(), Scope::Write, false)
        );
        // B cannot see or revoke A's key.
        assert!(store.keys(&b.id).await.unwrap().is_empty());
        assert!(matches!(
            store.revoke_key(&b.id, &listed.id).await,
            Err(StoreError::NotFound("key"))
        ));
        assert!(store.authenticate(&key_a).await.unwrap().is_some());
        let revoked = store.revoke_key(&a.id, &listed.id).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(store.authenticate(&key_a).await.unwrap(), None);
        assert!(matches!(
            store.create_key("acc_missing", "x", Scope::Read).await,
            Err(StoreError::NotFound("account"))
        ));
    })
    .await;
}

#[tokio::test]
async fn reopening_applies_no_migration_twice_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("", dir.path()).await.unwrap();
    let account = store.create_account("kept").await.unwrap();
    drop(store);
    let again = Store::open("", dir.path()).await.unwrap();
    assert_eq!(again.account(&account.id).await.unwrap().name, "kept");
    assert!(again.ping().await);
    assert!(matches!(
        Store::open("mysql://x", dir.path()).await,
        Err(StoreError::UnsupportedUrl(_))
    ));
}

#[tokio::test]
async fn calls_route_by_number_with_the_catch_all_rule() {
    on_each_backend(|store, _| async move {
        store.bootstrap(None).await.unwrap();
        // No number configured yet: everything reaches the operator's default agent, unless
        // sip.catch_all = false says otherwise.
        let fresh = store
            .route(Some("+15550000001"), None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fresh.account_id, OPERATOR_ACCOUNT);
        assert_eq!(store.route(None, None, Some(false)).await.unwrap(), None);
        let a = store.create_account("A").await.unwrap();
        let agent = store
            .create_agent(&a.id, "Reception", &serde_json::json!({"language": "auto"}))
            .await
            .unwrap();
        store
            .create_number(&a.id, "+15550000001", Some(&agent.id))
            .await
            .unwrap();
        let routed = store
            .route(Some("+15550000001"), None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (routed.account_id.as_str(), routed.agent_id.as_deref()),
            (a.id.as_str(), Some(agent.id.as_str()))
        );
        // The agent's settings come with the route, versioned by their last change.
        assert_eq!(
            routed.agent,
            Some((serde_json::json!({"language": "auto"}), agent.updated_at))
        );
        assert_eq!(
            store.route(Some("+15550000002"), None, None).await.unwrap(),
            None
        );
        // From a trunk with a default, an unknown number reaches the trunk's account.
        let via_trunk = store
            .route(
                Some("+15550000002"),
                Some((&a.id, Some(&agent.id))),
                Some(false),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (via_trunk.account_id.as_str(), via_trunk.agent_id.as_deref()),
            (a.id.as_str(), Some(agent.id.as_str()))
        );
        assert!(via_trunk.agent.is_some());
        assert_eq!(
            store
                .route(Some("+15550000002"), None, Some(true))
                .await
                .unwrap()
                .unwrap()
                .account_id,
            OPERATOR_ACCOUNT
        );
        assert!(matches!(
            store.create_number(&a.id, "+15550000001", None).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.delete_agent(&a.id, &agent.id).await,
            Err(StoreError::Conflict(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn call_records_page_newest_first_on_both_backends() {
    use parley::store::cdr::CdrQuery;
    on_each_backend(|store, _| async move {
        let a = store.create_account("A").await.unwrap();
        for i in 0..5i64 {
            let mut r = parley::call::record::CallRecord::inbound(
                &format!("call-{i}"),
                "sip:caller@example.com",
                "sip:+15550000001@parley",
            )
            .refused(402, "no_credit");
            r.account_id = a.id.clone();
            r.started_at = 1_000 + i;
            r.mos = Some(4.25);
            r.loss_percent = 1.5;
            store.insert_cdr(&r).await.unwrap();
        }
        let mut q = CdrQuery {
            account_id: a.id.clone(),
            limit: 2,
            ..CdrQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.cdrs(&q).await.unwrap();
            seen.extend(page.iter().map(|c| c.started_at));
            if page.len() < 2 {
                break;
            }
            let last = page.last().unwrap();
            q.after = Some((last.started_at, last.id.clone()));
        }
        assert_eq!(seen, vec![1_004, 1_003, 1_002, 1_001, 1_000]);
        let one = store
            .cdrs(&CdrQuery {
                from: Some(1_003),
                limit: 10,
                ..q.clone()
            })
            .await;
        let one = one.unwrap();
        assert_eq!(
            one.len(),
            0,
            "after the last page's cursor nothing is newer"
        );
        let newest = store
            .cdrs(&CdrQuery {
                account_id: a.id.clone(),
                from: Some(1_003),
                limit: 10,
                ..CdrQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(newest.len(), 2);
        assert_eq!(
            (newest[0].mos, newest[0].loss_percent, newest[0].final_code),
            (Some(4.25), 1.5, 402)
        );
        assert!(matches!(
            store.cdr("acc_other", &newest[0].id).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn the_webhook_outbox_claims_once_and_logs_each_try() {
    use parley::store::webhooks::Attempt;
    on_each_backend(|store, _| async move {
        let a = store.create_account("A").await.unwrap();
        let all = vec!["*".to_string()];
        let ended = vec!["call.ended".to_string()];
        store
            .create_webhook(&a.id, "http://127.0.0.1:9/x", &all, "0123456789abcdef")
            .await
            .unwrap();
        let only = store
            .create_webhook(&a.id, "http://127.0.0.1:9/y", &ended, "0123456789abcdef")
            .await
            .unwrap();
        assert_eq!(
            store
                .enqueue_event(&a.id, "call.started", "{}")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .enqueue_event(&a.id, "call.ended", "{\"n\":1}")
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .enqueue_event("acc_nobody", "call.ended", "{}")
                .await
                .unwrap(),
            0
        );
        let now = parley::store::now_ms() + 1;
        let due = store.due_deliveries(now, 10).await.unwrap();
        assert_eq!(due.len(), 3);
        let d = due.iter().find(|d| d.url.ends_with("/y")).unwrap().clone();
        assert!(store.claim_delivery(&d, now + 60_000).await.unwrap());
        assert!(
            !store.claim_delivery(&d, now + 60_000).await.unwrap(),
            "claimed once"
        );
        let failed = Attempt {
            status: Some(503),
            error: None,
            duration_ms: 3,
        };
        store
            .record_attempt(&d, &failed, now + 1_000)
            .await
            .unwrap();
        let log = store.deliveries(&a.id, &only.id).await.unwrap();
        assert_eq!(
            (log[0].state.as_str(), log[0].attempts, log[0].last_status),
            ("pending", 1, Some(503))
        );
        let retry = store.due_deliveries(now + 1_000, 10).await.unwrap();
        let d = retry
            .iter()
            .find(|d| d.url.ends_with("/y"))
            .unwrap()
            .clone();
        assert_eq!(d.attempts, 1);
        let ok = Attempt {
            status: Some(200),
            error: None,
            duration_ms: 2,
        };
        store.record_attempt(&d, &ok, now + 2_000).await.unwrap();
        let log = store.deliveries(&a.id, &only.id).await.unwrap();
        assert_eq!((log[0].state.as_str(), log[0].attempts), ("delivered", 2));
        assert!(log[0].delivered_at.is_some());
    })
    .await;
}
