//! The typed in-process API (`relay_host::client`) end to end: a `Client` runs the
//! host in this process against the connector emulator over a real loopback
//! socket. It checks what the typed layer adds over `Host::start`: events arrive
//! typed, concurrent `outbound` calls each resolve with their own
//! `outbound_result` (answered out of order on purpose), commands go out typed,
//! and after `shutdown` the event stream ends.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{observed, WAIT};
use futures_util::StreamExt as _;
use relay_connector::{
    Command as Emulator, Connector, ConnectorOptions, Observed, Outcome, Seen, Sent,
};
use relay_host::app::HostOptions;
use relay_host::client::{Client, ClientError, Command, Event, LinkState};
use relay_host::spec::{IdentitySpec, TenantSpec};
use serde_json::{json, Value};

const TENANT: &str = "t1";

fn send_action(chat_id: &str, content: &str) -> Value {
    json!({"op": "send", "chat_id": chat_id, "content": content})
}

fn inbound_event(text: &str, chat_id: &str) -> Value {
    json!({"text": text, "message_type": "text", "message_id": format!("in-{text}"),
           "source": {"platform": "discord", "chat_id": chat_id, "chat_type": "group",
                      "user_id": "u1", "user_name": "ann"}})
}

/// An emulator command from its NDJSON form (docs/CONNECTOR.md).
fn emulator(v: Value) -> Emulator {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad command {v}: {e}"))
}

/// Reads events until one matches `want`; returns it and every event before it.
async fn expect(
    client: &mut Client,
    what: &str,
    want: impl Fn(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .unwrap_or_else(|_| panic!("no {what} event; saw {before:#?}"))
            .unwrap_or_else(|| panic!("the stream ended before {what}; saw {before:#?}"));
        if want(&event) {
            return (event, before);
        }
        before.push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_correlates_outbound_and_streams_events() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let identity = IdentitySpec {
        platform: "discord".into(),
        bot_id: "app1".into(),
        command_manifest: None,
    };
    let spec = TenantSpec::new(TENANT, h.url(), vec![identity]).expect("spec");
    let options = HostOptions {
        shutdown_grace: Duration::from_secs(2),
        ..HostOptions::default()
    };
    let mut client = Client::start(vec![spec], options).expect("start the host");
    assert_eq!(client.tenant_ids(), [TENANT]);

    // Typed events up to `ready`: the dial, the handshake, the descriptor.
    let (ready, before) = expect(&mut client, "ready", |e| matches!(e, Event::Ready(_))).await;
    assert_eq!(ready.tenant(), Some(TENANT));
    let Event::Ready(ready) = ready else {
        unreachable!()
    };
    assert_eq!(ready.descriptor["platform"], "discord", "{ready:?}");
    let states: Vec<LinkState> = before
        .iter()
        .filter_map(|e| match e {
            Event::State(s) => Some(s.state.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(states, [LinkState::Connecting, LinkState::Handshaking]);
    let (state, _) = expect(&mut client, "state ready", |e| matches!(e, Event::State(_))).await;
    assert!(
        matches!(&state, Event::State(s) if s.state == LinkState::Ready),
        "{state:?}"
    );

    // Two concurrent outbound calls. The first send the emulator sees is answered
    // late, so the answers come back in the other order.
    h.inject(emulator(
        json!({"cmd": "outbound_rule", "op": "send", "reply": "success",
                             "delay_ms": 700, "times": 1}),
    ))
    .expect("rule");
    let (first, second) = tokio::join!(
        client.outbound(TENANT, send_action("c1", "first")),
        client.outbound(TENANT, send_action("c1", "second")),
    );
    let (first, second) = (first.expect("first result"), second.expect("second result"));
    assert_ne!(first.id, second.id, "each call has an id of its own");
    for r in [&first, &second] {
        assert_eq!(r.tenant.as_deref(), Some(TENANT));
        assert!(r.success(), "{r:?}");
        assert!(r.message_id().is_some(), "{r:?}");
    }
    // What the emulator saw and answered, in order, matched by its request id.
    let mut content_of = HashMap::new();
    let mut seen = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match observed(&h, "outbound frames and results", |e| {
            matches!(
                e,
                Observed::Seen {
                    frame: Seen::Outbound { .. },
                    ..
                } | Observed::Sent {
                    frame: Sent::OutboundResult { .. },
                    ..
                }
            )
        })
        .await
        {
            Observed::Seen {
                frame: Seen::Outbound {
                    request_id, action, ..
                },
                ..
            } => {
                seen.push(action["content"].clone());
                content_of.insert(request_id.to_string(), action["content"].clone());
            }
            Observed::Sent {
                frame: Sent::OutboundResult { request_id, result },
                ..
            } => answers.push((content_of[&request_id.to_string()].clone(), result)),
            _ => unreachable!(),
        }
    }
    let answered: Vec<&Value> = answers.iter().map(|(content, _)| content).collect();
    assert_eq!(answered, [&seen[1], &seen[0]], "answered out of order");
    let answer_to = |content: &str| {
        answers
            .iter()
            .find(|(c, _)| c == content)
            .map(|(_, result)| result.clone())
            .expect("an answer per send")
    };
    assert_eq!(
        first.result,
        answer_to("first"),
        "the first call got its own answer"
    );
    assert_eq!(
        second.result,
        answer_to("second"),
        "the second call got its own answer"
    );
    assert_ne!(first.result, second.result);

    // A live inbound arrives as a typed message; the correlated results never
    // reached the stream.
    h.inject(Emulator::inbound(inbound_event("hello there", "c1"), false))
        .expect("inbound");
    let (message, before) =
        expect(&mut client, "message", |e| matches!(e, Event::Message(_))).await;
    assert!(
        !before.iter().any(|e| matches!(e, Event::OutboundResult(_))),
        "{before:#?}"
    );
    let Event::Message(message) = message else {
        unreachable!()
    };
    assert_eq!(message.tenant.as_deref(), Some(TENANT));
    assert_eq!(message.buffer_id, None);
    assert_eq!(message.message["text"], "hello there");
    assert_eq!(message.message["source"]["chat_id"], "c1");

    // A buffered one carries a buffer id; the typed `ack` reaches the connector.
    let Outcome::Sent {
        buffer_id: Some(buffer_id),
        ..
    } = h
        .inject(Emulator::inbound(inbound_event("durable", "c1"), true))
        .expect("buffered inbound")
    else {
        panic!("the buffered inbound was not sent")
    };
    let (message, _) = expect(&mut client, "buffered message", |e| {
        matches!(e, Event::Message(_))
    })
    .await;
    let Event::Message(message) = message else {
        unreachable!()
    };
    assert_eq!(message.buffer_id.as_deref(), Some(buffer_id.as_str()));
    client
        .send(Command::Ack {
            tenant: Some(TENANT.into()),
            buffer_id: buffer_id.clone(),
        })
        .await;
    match observed(&h, "inbound_ack", |e| {
        matches!(
            e,
            Observed::Seen {
                frame: Seen::InboundAck { .. },
                ..
            }
        )
    })
    .await
    {
        Observed::Seen {
            frame:
                Seen::InboundAck {
                    buffer_id: id,
                    known,
                },
            ..
        } => {
            assert_eq!(id, json!(buffer_id));
            assert!(known, "the acked id was pending at the connector");
        }
        _ => unreachable!(),
    }

    // `status`: passed through directly, and as a typed event.
    let status = client.status();
    assert_eq!(status.len(), 1);
    assert_eq!(
        (status[0].tenant.as_str(), status[0].state.as_str()),
        (TENANT, "ready")
    );
    client.send(Command::Status).await;
    let (status, _) = expect(&mut client, "status", |e| matches!(e, Event::Status(_))).await;
    let Event::Status(status) = status else {
        unreachable!()
    };
    assert_eq!(status.tenants.len(), 1);
    assert_eq!(status.tenants[0].tenant, TENANT);
    assert_eq!(status.tenants[0].state, LinkState::Ready);
    assert!(
        status.tenants[0].descriptors.contains_key("discord"),
        "{status:?}"
    );

    // A rejected outbound resolves with the host's error, not a hang.
    let rejected = client.outbound("nobody", send_action("c1", "x")).await;
    assert!(
        matches!(&rejected, Err(ClientError::Rejected { kind, .. }) if kind == "unknown_tenant"),
        "{rejected:?}"
    );

    // Shutdown: the tenant goes idle and stops; then the stream ends.
    tokio::time::timeout(WAIT, client.shutdown())
        .await
        .expect("shutdown within the wait");
    let mut rest = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(event)) => rest.push(event),
            Ok(None) => break,
            Err(_) => panic!("the stream did not end after shutdown; saw {rest:#?}"),
        }
    }
    assert!(
        rest.iter().any(|e| matches!(e, Event::Idle(i) if i.acked)),
        "going_idle was acknowledged: {rest:#?}"
    );
    match rest.last() {
        Some(Event::State(s)) => {
            assert_eq!(s.state, LinkState::Stopped);
            assert_eq!(s.reason.as_deref(), Some("shutdown"));
            assert_eq!(s.tenant.as_deref(), Some(TENANT));
        }
        other => panic!("the last event is `state stopped`, got {other:?} in {rest:#?}"),
    }
    assert_eq!(
        client.outbound(TENANT, send_action("c1", "late")).await,
        Err(ClientError::HostStopped)
    );
}
