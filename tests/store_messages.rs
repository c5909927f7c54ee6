//! Contacts, their timeline, messages and chat tokens in the store, on both backends
//! (SQLite always, PostgreSQL when `PARLEY_TEST_DATABASE_URL` names one).

use parley::store::contacts::{Channel, NewEntry, Role};
use parley::store::messages::{Inbound, Outbound};
use parley::store::{now_ms, Store, StoreError};
use serde_json::json;

mod support;
use support::stores::on_each_backend;

async fn account(store: &Store) -> String {
    store.create_account("Bakery").await.unwrap().id
}

fn inbound<'a>(
    account_id: &'a str,
    sid: &'a str,
    body: &'a str,
    raw: &'a serde_json::Value,
) -> Inbound<'a> {
    Inbound {
        account_id,
        from: "+15550100999",
        to: "+15550100200",
        body,
        sid,
        raw,
        segments: 1,
        encoding: "GSM-7",
    }
}

fn outbound<'a>(account_id: &'a str, body: &'a str, key: Option<&'a str>) -> Outbound<'a> {
    Outbound {
        account_id,
        from: "+15550100200",
        to: "+15550100999",
        body,
        source: "api",
        idempotency_key: key,
        status: "pending",
        send_after: now_ms(),
        segments: 1,
        encoding: "GSM-7",
    }
}

#[tokio::test]
async fn a_received_message_is_stored_once_with_its_contact_and_timeline_entry() {
    on_each_backend(|store, _| async move {
        let acc = account(&store).await;
        let raw = json!({"MessageSid": "SM1", "Body": "Hi", "FromCity": "Albany"});
        let first = store
            .record_inbound(&inbound(&acc, "SM1", "Hi", &raw))
            .await
            .unwrap();
        assert!(first.created);
        assert_eq!(first.message.raw, Some(raw.clone()));
        assert_eq!(first.message.status, "received");
        assert_eq!(first.contact.address, "+15550100999");
        let again = store
            .record_inbound(&inbound(&acc, "SM1", "Hi", &raw))
            .await
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.message.id, first.message.id);
        assert_eq!(again.contact.id, first.contact.id);
        let timeline = store.timeline(&first.contact.id, None, 10).await.unwrap();
        assert_eq!(timeline.len(), 1, "{timeline:?}");
        assert_eq!(
            (timeline[0].channel, timeline[0].role),
            (Channel::Sms, Role::Contact)
        );
        assert_eq!(
            timeline[0].ref_id.as_deref(),
            Some(first.message.id.as_str())
        );
        // Concurrent replays make one message.
        let raw2 = json!({"MessageSid": "SM2"});
        let tries = (0..8).map(|_| {
            let store = store.clone();
            let (acc, raw2) = (acc.clone(), raw2.clone());
            tokio::spawn(async move {
                store
                    .record_inbound(&inbound(&acc, "SM2", "Again", &raw2))
                    .await
                    .unwrap()
                    .created
            })
        });
        let mut made = 0;
        for t in tries {
            made += usize::from(t.await.unwrap());
        }
        assert_eq!(made, 1);
        let listed = store.messages(&acc, None, None, 100).await.unwrap();
        assert_eq!(listed.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn status_only_moves_forward_and_early_callbacks_wait_for_their_message() {
    on_each_backend(|store, _| async move {
        let acc = account(&store).await;
        let m = store
            .enqueue_outbound(&outbound(&acc, "Your order is ready", None))
            .await
            .unwrap();
        // A callback for the sid before the send is recorded: kept, applied later.
        let early = store
            .apply_status(
                "SMabc",
                "sent",
                None,
                None,
                &json!({"MessageStatus": "sent"}),
            )
            .await
            .unwrap();
        assert!(early.is_none());
        let sent = store
            .message_sent(&m.message.id, "SMabc", "queued", 1)
            .await
            .unwrap();
        assert_eq!(
            sent.status, "sent",
            "the early callback applied once the sid was known"
        );
        let (after, changed) = store
            .apply_status(
                "SMabc",
                "delivered",
                None,
                None,
                &json!({"MessageStatus": "delivered"}),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(changed);
        assert_eq!(after.status, "delivered");
        let (late, changed) = store
            .apply_status(
                "SMabc",
                "sending",
                None,
                None,
                &json!({"MessageStatus": "sending"}),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!changed);
        assert_eq!(late.status, "delivered");
        let events = store.message_events(&m.message.id).await.unwrap();
        let kept: Vec<(&str, bool)> = events.iter().map(|(s, a, _)| (s.as_str(), *a)).collect();
        assert_eq!(
            kept,
            vec![("sent", true), ("delivered", true), ("sending", false)]
        );
        // read comes after delivered.
        let (read, _) = store
            .apply_status("SMabc", "read", None, None, &json!({}))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.status, "read");
    })
    .await;
}

#[tokio::test]
async fn the_outbox_hands_a_due_message_to_one_node_and_keeps_idempotency() {
    on_each_backend(|store, _| async move {
        let acc = account(&store).await;
        let a = store
            .enqueue_outbound(&outbound(&acc, "One", Some("k1")))
            .await
            .unwrap();
        assert!(a.created);
        let replay = store
            .enqueue_outbound(&outbound(&acc, "One", Some("k1")))
            .await
            .unwrap();
        assert!(!replay.created);
        assert_eq!(replay.message.id, a.message.id);
        let other = store
            .enqueue_outbound(&outbound(&acc, "Two", Some("k1")))
            .await;
        assert!(matches!(other, Err(StoreError::Conflict(_))), "{other:?}");
        let now = now_ms();
        let due = store.due_messages(now + 1, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(store
            .claim_message(&a.message.id, now + 1, now + 60_000)
            .await
            .unwrap());
        assert!(!store
            .claim_message(&a.message.id, now + 2, now + 60_000)
            .await
            .unwrap());
        assert!(
            store.due_messages(now + 2, 10).await.unwrap().is_empty(),
            "claimed"
        );
        assert_eq!(
            store.next_due().await.unwrap(),
            None,
            "nothing unclaimed waits"
        );
        // Held for later: due again only then.
        store
            .hold_message(&a.message.id, "scheduled", now + 3_600_000)
            .await
            .unwrap();
        assert!(store.due_messages(now + 2, 10).await.unwrap().is_empty());
        assert_eq!(store.next_due().await.unwrap(), Some(now + 3_600_000));
        assert_eq!(
            store.due_messages(now + 3_600_000, 10).await.unwrap().len(),
            1
        );
        let failed = store
            .message_failed(&a.message.id, Some(21211), "Invalid 'To' Phone Number", 1)
            .await
            .unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.error_code),
            ("failed", Some(21211))
        );
        assert!(store
            .due_messages(now + 3_600_000, 10)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn contacts_keep_their_language_and_timeline_in_order() {
    on_each_backend(|store, _| async move {
        let acc = account(&store).await;
        let c = store.contact_for(&acc, "+15550100999").await.unwrap();
        assert_eq!(
            store.contact_for(&acc, "+15550100999").await.unwrap().id,
            c.id
        );
        assert_eq!(
            store.find_contact(&acc, "+15550100999").await.unwrap().id,
            c.id
        );
        assert_eq!(
            store.find_contact(&acc, &c.id).await.unwrap().address,
            c.address
        );
        store
            .set_contact_language(&c.id, Some("pt"), Some(0.8))
            .await
            .unwrap();
        let c2 = store.contact(&acc, &c.id).await.unwrap();
        assert_eq!(
            (c2.language.as_deref(), c2.language_confidence),
            (Some("pt"), Some(0.8))
        );
        let detail = json!({"transcript": [{"role": "caller", "text": "Oi"}]});
        for (i, text) in ["first", "second", "third"].iter().enumerate() {
            let entry = NewEntry {
                channel: if i == 0 {
                    Channel::Voice
                } else {
                    Channel::Chat
                },
                role: Role::Summary,
                text,
                ref_id: None,
                detail: (i == 0).then_some(&detail),
            };
            store.append_timeline(&acc, &c.id, &entry).await.unwrap();
        }
        let newest = store.timeline(&c.id, None, 2).await.unwrap();
        let texts: Vec<&str> = newest.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, vec!["third", "second"]);
        let older = store.timeline(&c.id, Some(newest[1].id), 10).await.unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].detail, Some(detail.clone()));
        // Another account's contact at the same number is another contact.
        let other = account(&store).await;
        assert_ne!(
            store.contact_for(&other, "+15550100999").await.unwrap().id,
            c.id
        );
        assert!(matches!(
            store.contact(&other, &c.id).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn chat_tokens_grant_their_contact_until_they_expire() {
    on_each_backend(|store, _| async move {
        let acc = account(&store).await;
        let c = store.contact_for(&acc, "web:visitor-42").await.unwrap();
        let token = store
            .mint_chat_token(&acc, &c.id, None, now_ms() + 60_000)
            .await
            .unwrap();
        let grant = store.chat_grant(&token).await.unwrap().expect("valid");
        assert_eq!(
            (grant.account_id.as_str(), grant.contact_id.as_str()),
            (acc.as_str(), c.id.as_str())
        );
        assert_eq!(store.chat_grant("pct_nothing").await.unwrap(), None);
        let old = store
            .mint_chat_token(&acc, &c.id, None, now_ms() - 1)
            .await
            .unwrap();
        assert_eq!(store.chat_grant(&old).await.unwrap(), None, "expired");
    })
    .await;
}
