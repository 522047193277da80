//! The scripted conversation, one method per step. Every line is printed only
//! once what it describes was observed (at the connector or in the event
//! stream), in script order, so the transcript is the same on every run.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::app::App;
use super::cast::{self, Member, CAST};
use super::transcript::{quote, short_id, Hop, Transcript};
use super::wire::{seen, sent, Wire};
use super::Failure;
use relay_connector::script::{InboundCmd, InterruptCmd, PassthroughCmd};
use relay_connector::{Command, Initiator, Observed, Outcome, Seen, Sent};

/// The demo in progress.
pub struct Demo {
    pub out: Transcript,
    pub app: App,
    pub wire: Wire,
    /// The step running now (for the failure message).
    pub step: String,
    /// The message id of the application's reply, per tenant.
    replies: HashMap<&'static str, String>,
}

impl Demo {
    pub fn new(out: Transcript, app: App, wire: Wire) -> Self {
        Demo {
            out,
            app,
            wire,
            step: "setup".into(),
            replies: HashMap::new(),
        }
    }

    /// Every step in order; the first that does not see what it expects fails.
    pub async fn play(&mut self) -> Result<(), Failure> {
        self.handshakes().await?;
        self.conversation().await?;
        self.slash_command().await?;
        self.button_press().await?;
        self.interrupts().await?;
        self.crash_and_replay().await?;
        self.replayed_live_message().await?;
        self.shut_down().await
    }

    /// Has the connector send `text` from `m`'s user, unbuffered, on `conn`; waits
    /// until the frame is on the wire and prints it.
    async fn inject_live(&mut self, m: &Member, text: &str, conn: u64) -> Result<(), Failure> {
        self.wire.inject(Command::Inbound(InboundCmd {
            event: cast::inbound_event(m, text),
            conn: Some(conn),
            ..InboundCmd::default()
        }))?;
        self.wire
            .expect(m.tenant, "the inbound frame", |o| {
                matches!(
                    sent(o),
                    Some(Sent::Inbound {
                        buffer_id: None,
                        ..
                    })
                )
            })
            .await?;
        self.out.line(
            m.tenant,
            Hop::ConnToHost,
            &format!("inbound {}", quote(text)),
        );
        Ok(())
    }

    /// Has the connector send `event` buffered on `conn`, waits until the frame is
    /// on the wire, and returns its buffer id.
    async fn inject_buffered(
        &mut self,
        m: &Member,
        event: Value,
        conn: u64,
        what: &str,
    ) -> Result<String, Failure> {
        let outcome = self.wire.inject(Command::Inbound(InboundCmd {
            event,
            buffered: true,
            conn: Some(conn),
            ..InboundCmd::default()
        }))?;
        let Outcome::Sent {
            buffer_id: Some(id),
            ..
        } = outcome
        else {
            return Err(Failure::new(format!("{what} was not sent: {outcome:?}")));
        };
        let bid = id.clone();
        self.wire
            .expect(m.tenant, what, |o| {
                matches!(sent(o), Some(Sent::Inbound { buffer_id: Some(b), replay: false }) if *b == bid)
            })
            .await?;
        Ok(id)
    }

    fn begin(&mut self, number: u32, title: &str) {
        self.step = format!("{number} ({title})");
        self.out.heading(number, title);
    }

    // ---- 1 ----------------------------------------------------------------------

    async fn handshakes(&mut self) -> Result<(), Failure> {
        self.begin(
            1,
            "handshakes: three tenants, three sandboxes, one connector",
        );
        for m in &CAST {
            self.upgrade_and_hello(m, "WebSocket upgrade with a")
                .await?;
            // One descriptor per hello, in hello order.
            for identity in m.identities() {
                self.wire
                    .expect(m.tenant, "the descriptor", |o| {
                        matches!(sent(o), Some(Sent::Descriptor { platform }) if platform == identity.platform)
                    })
                    .await?;
                self.out.line(
                    m.tenant,
                    Hop::ConnToHost,
                    &format!("descriptor for {}", identity.platform),
                );
            }
            let ready = self.app.expect(m.tenant, "ready", |_| true).await?;
            self.out.line(
                m.tenant,
                Hop::HostToApp,
                &describe_ready(&ready["descriptor"]),
            );
            self.later_descriptors(m, &ready, None).await?;
            if !m.more.is_empty() {
                self.status_descriptors(m).await?;
            }
        }
        Ok(())
    }

    /// D15: the first descriptor gave `ready`; every other fronted platform's
    /// gives a `descriptor` event. `reconnect`: print the short form.
    async fn later_descriptors(
        &mut self,
        m: &Member,
        ready: &Value,
        reconnect: Option<u64>,
    ) -> Result<(), Failure> {
        let first = ready["descriptor"]["platform"].as_str().unwrap_or("");
        for identity in m.identities() {
            let p = identity.platform;
            if p == first {
                continue;
            }
            let ev = self
                .app
                .expect(m.tenant, "descriptor", |v| v["platform"] == p)
                .await?;
            let d = &ev["descriptor"];
            if d["platform"] != p {
                return Err(Failure::new(format!(
                    "[{}] the {p} descriptor event carries another platform's descriptor: {d}",
                    m.tenant
                )));
            }
            let text = match reconnect {
                Some(n) => format!("descriptor platform={p} (reconnect {n})"),
                None => format!("descriptor platform={p} · {}", describe_limits(d)),
            };
            self.out.line(m.tenant, Hop::HostToApp, &text);
        }
        Ok(())
    }

    /// The host's `status` answer lists every fronted platform's descriptor.
    async fn status_descriptors(&mut self, m: &Member) -> Result<(), Failure> {
        self.app.send(json!({"op": "status"})).await;
        self.out.line(m.tenant, Hop::AppToHost, "status");
        let status = self.app.expect_host("status").await?;
        let descriptors = status["tenants"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["tenant"] == m.tenant))
            .map(|t| &t["descriptors"])
            .ok_or_else(|| {
                Failure::new(format!("[{}] is missing from the status answer", m.tenant))
            })?;
        let mut parts = Vec::new();
        for identity in m.identities() {
            let d = &descriptors[identity.platform];
            if !d.is_object() {
                return Err(Failure::new(format!(
                    "[{}] status has no {} descriptor: {descriptors}",
                    m.tenant, identity.platform
                )));
            }
            parts.push(format!(
                "{} max {}",
                identity.platform, d["max_message_length"]
            ));
        }
        self.out.line(
            m.tenant,
            Hop::HostToApp,
            &format!("status descriptors: {}", parts.join(", ")),
        );
        Ok(())
    }

    /// The accepted upgrade (the token names the tenant's gateway) and one hello
    /// per identity, in order.
    async fn upgrade_and_hello(&mut self, m: &Member, what: &str) -> Result<(), Failure> {
        self.wire
            .expect(m.tenant, "the accepted upgrade", |o| {
                matches!(o, Observed::Connected { .. })
            })
            .await?;
        self.out.line(
            m.tenant,
            Hop::HostToConn,
            &format!("{what} signed token of {} → accepted", m.gateway_id),
        );
        for identity in m.identities() {
            let hello = self
                .wire
                .expect(m.tenant, &format!("the {} hello", identity.platform), |o| {
                    matches!(seen(o), Some(Seen::Hello { platform, bot_id, .. })
                        if platform == identity.platform && bot_id == identity.bot_id)
                })
                .await?;
            if let Some(Seen::Hello {
                platform,
                bot_id,
                command_manifest,
            }) = seen(&hello)
            {
                let mut text = format!("hello platform={platform} botId={bot_id}");
                let names: Vec<String> = command_manifest
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c["name"].as_str().map(|n| format!("/{n}")))
                            .collect()
                    })
                    .unwrap_or_default();
                if !names.is_empty() {
                    text.push_str(&format!(" commands={}", names.join(",")));
                }
                self.out.line(m.tenant, Hop::HostToConn, &text);
            }
        }
        Ok(())
    }

    // ---- 2 ----------------------------------------------------------------------

    async fn conversation(&mut self) -> Result<(), Failure> {
        self.begin(2, "a message in, an answer out (every tenant)");
        for m in &CAST {
            let conn = self.wire.conn_for(m.tenant)?;
            self.inject_live(m, m.greeting, conn).await?;
            let message = self
                .app
                .expect(m.tenant, "message", |v| v["message"]["text"] == m.greeting)
                .await?;
            self.out
                .line(m.tenant, Hop::HostToApp, &describe_message(&message));

            let id = format!("{}-1", m.tenant);
            let content = format!("hi {}, got it", m.user_name);
            self.app
                .send(json!({
                    "op": "outbound", "tenant": m.tenant, "id": id,
                    "action": {"op": "send", "chat_id": m.chat_id, "content": content},
                }))
                .await;
            self.out.line(
                m.tenant,
                Hop::AppToHost,
                &format!(
                    "outbound id={id} send chat={} content={}",
                    m.chat_id,
                    quote(&content)
                ),
            );
            let request_id = self.outbound_frame(m).await?;
            let rid = request_id.clone();
            let result = self
                .wire
                .expect(m.tenant, "the outbound_result", |o| {
                    matches!(sent(o), Some(Sent::OutboundResult { request_id, .. }) if *request_id == rid)
                })
                .await?;
            if let Some(Sent::OutboundResult { result, .. }) = sent(&result) {
                self.out.line(
                    m.tenant,
                    Hop::ConnToHost,
                    &format!(
                        "outbound_result requestId={} {}",
                        short_id(request_id.as_str().unwrap_or("")),
                        describe_result(result)
                    ),
                );
            }
            let event = self
                .app
                .expect(m.tenant, "outbound_result", |v| v["id"] == id.as_str())
                .await?;
            let result = &event["result"];
            if result["success"] != true {
                return Err(Failure::new(format!(
                    "[{}] the reply failed: {result}",
                    m.tenant
                )));
            }
            self.out.line(
                m.tenant,
                Hop::HostToApp,
                &format!("outbound_result id={id} {}", describe_result(result)),
            );
            if let Some(message_id) = result["message_id"].as_str() {
                self.replies.insert(m.tenant, message_id.to_string());
            }
        }
        Ok(())
    }

    /// The `outbound` frame the host wrote; returns its request id.
    async fn outbound_frame(&mut self, m: &Member) -> Result<Value, Failure> {
        let o = self
            .wire
            .expect(m.tenant, "the outbound frame", |o| {
                matches!(seen(o), Some(Seen::Outbound { .. }))
            })
            .await?;
        let Some(Seen::Outbound {
            request_id,
            action,
            platform,
            bot_id,
        }) = seen(&o)
        else {
            return Err(Failure::new("not an outbound frame"));
        };
        let mut text = format!(
            "outbound requestId={} op={}",
            short_id(request_id.as_str().unwrap_or("?")),
            action["op"].as_str().unwrap_or("?")
        );
        if let Some(p) = platform.as_ref().and_then(Value::as_str) {
            text.push_str(&format!(" platform={p}"));
        }
        if let Some(b) = bot_id.as_ref().and_then(Value::as_str) {
            text.push_str(&format!(" botId={b}"));
        }
        if let Some(meta) = action.get("metadata").filter(|v| v.is_object()) {
            text.push_str(&format!(" metadata={meta}"));
        }
        self.out.line(m.tenant, Hop::HostToConn, &text);
        Ok(request_id.clone())
    }

    // ---- 3, 4 -------------------------------------------------------------------

    async fn slash_command(&mut self) -> Result<(), Failure> {
        self.begin(3, "a Discord slash command, forwarded as passthrough");
        let m = cast::member("acme");
        let data = json!({
            "id": "1300000000000000100", "name": "skill", "type": 1,
            "options": [{"type": 2, "name": "run", "options": [
                {"type": 1, "name": "deploy", "options": [
                    {"type": 3, "name": "env", "value": "prod"}]}]}],
        });
        let interaction = cast::discord_interaction("1300000000000000001", 2, data, None);
        self.passthrough(
            m,
            interaction,
            &format!("{} ran /skill run deploy env:prod", m.user_name),
        )
        .await?;
        let message = self
            .app
            .expect(m.tenant, "message", |v| {
                v["message"]["message_type"] == "command"
            })
            .await?;
        self.out
            .line(m.tenant, Hop::HostToApp, &describe_message(&message));
        Ok(())
    }

    async fn button_press(&mut self) -> Result<(), Failure> {
        self.begin(
            4,
            "a button press (component interaction), forwarded as passthrough",
        );
        let m = cast::member("acme");
        let on = self.replies.get(m.tenant).cloned().unwrap_or_default();
        let data = json!({"custom_id": "approve_deploy", "component_type": 2});
        let message = json!({"id": on, "content": format!("hi {}, got it", m.user_name)});
        let interaction = cast::discord_interaction("1300000000000000002", 3, data, Some(message));
        self.passthrough(
            m,
            interaction,
            &format!("{} pressed button approve_deploy on {on}", m.user_name),
        )
        .await?;
        let message = self
            .app
            .expect(m.tenant, "message", |v| {
                v["message"]["text"] == "approve_deploy"
            })
            .await?;
        self.out
            .line(m.tenant, Hop::HostToApp, &describe_message(&message));
        Ok(())
    }

    async fn passthrough(
        &mut self,
        m: &Member,
        interaction: Value,
        story: &str,
    ) -> Result<(), Failure> {
        let conn = self.wire.conn_for(m.tenant)?;
        self.wire.inject(Command::Passthrough(PassthroughCmd {
            interaction: Some(interaction),
            conn: Some(conn),
            ..PassthroughCmd::default()
        }))?;
        self.wire
            .expect(m.tenant, "the passthrough_forward frame", |o| {
                matches!(sent(o), Some(Sent::Passthrough { .. }))
            })
            .await?;
        self.out.line(
            m.tenant,
            Hop::ConnToHost,
            &format!(
                "passthrough_forward POST /interactions ({story}; token kept by the connector)"
            ),
        );
        Ok(())
    }

    // ---- 5 ----------------------------------------------------------------------

    async fn interrupts(&mut self) -> Result<(), Failure> {
        self.begin(5, "interrupts, both ways");
        let g = cast::member("globex");
        let session = format!("{}:{}", g.platform, g.chat_id);
        let conn = self.wire.conn_for(g.tenant)?;
        self.wire.inject(Command::Interrupt(InterruptCmd {
            session_key: json!(session),
            chat_id: json!(g.chat_id),
            conn: Some(conn),
        }))?;
        self.wire
            .expect(g.tenant, "the interrupt_inbound frame", |o| {
                matches!(sent(o), Some(Sent::InterruptInbound { .. }))
            })
            .await?;
        self.out.line(
            g.tenant,
            Hop::ConnToHost,
            &format!(
                "interrupt_inbound session_key={} chat={}",
                quote(&session),
                g.chat_id
            ),
        );
        let ev = self.app.expect(g.tenant, "interrupt", |_| true).await?;
        self.out.line(
            g.tenant,
            Hop::HostToApp,
            &format!(
                "interrupt session_key={} chat={}",
                quote(ev["session_key"].as_str().unwrap_or("")),
                ev["chat_id"].as_str().unwrap_or("")
            ),
        );

        let i = cast::member("initech");
        let session = format!("{}:{}", i.platform, i.chat_id);
        let reason = "user pressed stop";
        self.app
            .send(
                json!({"op": "interrupt", "tenant": i.tenant, "session_key": session,
                         "reason": reason}),
            )
            .await;
        self.out.line(
            i.tenant,
            Hop::AppToHost,
            &format!(
                "interrupt session_key={} reason={}",
                quote(&session),
                quote(reason)
            ),
        );
        let o = self
            .wire
            .expect(i.tenant, "the interrupt frame", |o| {
                matches!(seen(o), Some(Seen::Interrupt { .. }))
            })
            .await?;
        if let Some(Seen::Interrupt {
            session_key,
            reason,
        }) = seen(&o)
        {
            self.out.line(
                i.tenant,
                Hop::HostToConn,
                &format!(
                    "interrupt session_key={} reason={}",
                    quote(session_key.as_str().unwrap_or("")),
                    quote(reason.as_str().unwrap_or(""))
                ),
            );
        }
        Ok(())
    }

    // ---- 6 ----------------------------------------------------------------------

    async fn crash_and_replay(&mut self) -> Result<(), Failure> {
        self.begin(6, "a buffered message survives a connector crash");
        let g = cast::member("globex");
        let conn = self.wire.conn_for(g.tenant)?;
        let text = "is the deploy done?";
        let id = self
            .inject_buffered(
                g,
                cast::inbound_event(g, text),
                conn,
                "the buffered inbound frame",
            )
            .await?;
        self.out.line(
            g.tenant,
            Hop::ConnToHost,
            &format!("inbound {} bufferId={id} (kept until acked)", quote(text)),
        );
        let message = self
            .app
            .expect(g.tenant, "message", |v| v["buffer_id"] == id.as_str())
            .await?;
        self.out
            .line(g.tenant, Hop::HostToApp, &describe_message(&message));
        self.out.line(
            g.tenant,
            Hop::App,
            &format!("holds {id}: no ack until the hand-off is durable"),
        );

        let pending = self.wire.restart().await?;
        self.out.event(
            Hop::Conn,
            &format!(
                "✕ connector crashed: TCP dropped, no close frame (pending: {})",
                pending.join(", ")
            ),
        );
        self.out.event(
            Hop::Conn,
            "↻ connector back on the same port, replay buffer kept",
        );
        for m in &CAST {
            let ev = self
                .app
                .expect(m.tenant, "state", |v| v["state"] == "backoff")
                .await?;
            self.out.line(
                m.tenant,
                Hop::HostToApp,
                &format!("state backoff retry_in_ms={}", ev["retry_in_ms"]),
            );
        }
        for m in &CAST {
            self.upgrade_and_hello(m, "redial after the backoff, fresh")
                .await?;
            let ready = self.app.expect(m.tenant, "ready", |_| true).await?;
            let n = self.app.counts(m.tenant).reconnects();
            self.out
                .line(m.tenant, Hop::HostToApp, &format!("ready (reconnect {n})"));
            self.later_descriptors(m, &ready, Some(n)).await?;
            if m.tenant == g.tenant {
                let bid = id.clone();
                self.wire
                    .expect(g.tenant, "the replayed inbound", |o| {
                        matches!(sent(o), Some(Sent::Inbound { buffer_id: Some(b), replay: true }) if *b == bid)
                    })
                    .await?;
                self.out.line(
                    g.tenant,
                    Hop::ConnToHost,
                    &format!("inbound bufferId={id} (replayed after the hello)"),
                );
            }
        }

        // Frames of one connection are handled in order: if the replay had become a
        // second message, it would come before this one.
        let later = "still there?";
        let conn = self.wire.conn_for(g.tenant)?;
        self.inject_live(g, later, conn).await?;
        let next = self.app.expect(g.tenant, "message", |_| true).await?;
        if next["buffer_id"] == id.as_str() {
            return Err(Failure::new(format!(
                "[{}] {id} was delivered to the application twice",
                g.tenant
            )));
        }
        if next["message"]["text"] != later {
            return Err(Failure::new(format!(
                "[{}] unexpected message {next}",
                g.tenant
            )));
        }
        self.out
            .line(g.tenant, Hop::HostToApp, &describe_message(&next));
        self.out.line(
            g.tenant,
            Hop::App,
            &format!("saw {id} exactly once (the replay was recognised and skipped)"),
        );

        self.app
            .send(json!({"op": "ack", "tenant": g.tenant, "buffer_id": id}))
            .await;
        self.out
            .line(g.tenant, Hop::AppToHost, &format!("ack buffer_id={id}"));
        let bid = id.clone();
        self.wire
            .expect(g.tenant, "the inbound_ack", |o| {
                matches!(seen(o), Some(Seen::InboundAck { buffer_id, known: true }) if *buffer_id == bid.as_str())
            })
            .await?;
        self.out.line(
            g.tenant,
            Hop::HostToConn,
            &format!("inbound_ack bufferId={id} → removed from the replay buffer"),
        );
        let pending = self.wire.pending();
        if !pending.is_empty() {
            return Err(Failure::new(format!(
                "the connector still holds {pending:?} after the ack"
            )));
        }
        Ok(())
    }

    // ---- 7 ----------------------------------------------------------------------

    /// D16: a message delivered live that the connector's buffer hands over again
    /// (same platform, chat and message id, now with a bufferId) is acked at once
    /// and never reaches the application a second time.
    async fn replayed_live_message(&mut self) -> Result<(), Failure> {
        self.begin(
            7,
            "a live message replayed from the buffer, recognised once",
        );
        let m = cast::member("initech");
        let text = "is the build green?";
        let message_id = "1700000000.000100";
        let event = cast::identified_event(m, text, message_id);
        let conn = self.wire.conn_for(m.tenant)?;
        self.wire.inject(Command::Inbound(InboundCmd {
            event: event.clone(),
            conn: Some(conn),
            ..InboundCmd::default()
        }))?;
        self.wire
            .expect(m.tenant, "the live inbound frame", |o| {
                matches!(
                    sent(o),
                    Some(Sent::Inbound {
                        buffer_id: None,
                        ..
                    })
                )
            })
            .await?;
        self.out.line(
            m.tenant,
            Hop::ConnToHost,
            &format!(
                "inbound {} message_id={message_id} (live, not buffered)",
                quote(text)
            ),
        );
        let message = self
            .app
            .expect(m.tenant, "message", |v| v["message"]["text"] == text)
            .await?;
        self.out.line(
            m.tenant,
            Hop::HostToApp,
            &format!(
                "{} message_id={}",
                describe_message(&message),
                message["message"]["message_id"].as_str().unwrap_or("?")
            ),
        );

        let id = self
            .inject_buffered(m, event, conn, "the buffered copy")
            .await?;
        self.out.line(
            m.tenant,
            Hop::ConnToHost,
            &format!(
                "inbound {} message_id={message_id} bufferId={id} (the same message, from the buffer)",
                quote(text)
            ),
        );
        let bid = id.clone();
        self.wire
            .expect(m.tenant, "the inbound_ack of the copy", |o| {
                matches!(seen(o), Some(Seen::InboundAck { buffer_id, known: true }) if *buffer_id == bid.as_str())
            })
            .await?;
        if self.wire.pending().contains(&id) {
            return Err(Failure::new(format!(
                "the connector still holds {id} after its inbound_ack"
            )));
        }
        self.out.line(
            m.tenant,
            Hop::HostToConn,
            &format!(
                "inbound_ack bufferId={id} at once (message_id={message_id} delivered before) → removed from the replay buffer"
            ),
        );

        // Frames of one connection are handled in order: had the copy become a
        // second message, it would be waiting before this one.
        let later = "thanks";
        self.inject_live(m, later, conn).await?;
        let next = self
            .app
            .expect(m.tenant, "message", |v| v["message"]["text"] == later)
            .await?;
        let copies = self
            .app
            .waiting(m.tenant, "message", |v| v["message"]["text"] == text);
        if copies > 0 {
            return Err(Failure::new(format!(
                "[{}] message_id={message_id} reached the application {} times",
                m.tenant,
                copies + 1
            )));
        }
        self.out
            .line(m.tenant, Hop::HostToApp, &describe_message(&next));
        self.out.line(
            m.tenant,
            Hop::App,
            &format!(
                "saw message_id={message_id} exactly once (the buffered copy was recognised by its message id and skipped)"
            ),
        );
        Ok(())
    }

    // ---- 8 ----------------------------------------------------------------------

    async fn shut_down(&mut self) -> Result<(), Failure> {
        self.begin(8, "shutdown: every tenant goes idle, then closes");
        self.app.handle().shutdown().await;
        for m in &CAST {
            self.wire
                .expect(m.tenant, "going_idle", |o| {
                    matches!(seen(o), Some(Seen::GoingIdle))
                })
                .await?;
            self.wire
                .expect(m.tenant, "going_idle_ack", |o| {
                    matches!(sent(o), Some(Sent::GoingIdleAck))
                })
                .await?;
            let closed = self
                .wire
                .expect(m.tenant, "the close", |o| {
                    matches!(o, Observed::Disconnected { .. })
                })
                .await?;
            let Observed::Disconnected {
                code, initiator, ..
            } = closed
            else {
                return Err(Failure::new("not a disconnect"));
            };
            if initiator != Initiator::Gateway || code != Some(1000) {
                return Err(Failure::new(format!(
                    "[{}] the connection ended with {code:?} from {initiator:?}, not a close 1000 from the gateway",
                    m.tenant
                )));
            }
            self.out.line(
                m.tenant,
                Hop::HostToConn,
                "going_idle (acked by the connector), then close 1000",
            );
            let idle = self.app.expect(m.tenant, "idle", |_| true).await?;
            self.app
                .expect(m.tenant, "state", |v| v["state"] == "stopped")
                .await?;
            self.out.line(
                m.tenant,
                Hop::HostToApp,
                &format!("idle acked={}, then state stopped", idle["acked"]),
            );
        }
        let leftovers = self.app.leftovers().await;
        if let Some(first) = leftovers.first() {
            return Err(Failure::new(format!(
                "{} event(s) nobody expected, first: {first}",
                leftovers.len()
            )));
        }
        self.wire.shutdown().await;
        Ok(())
    }
}

/// `ready Discord · max 2000 chars · markdown discord · threads · 8 ops`.
fn describe_ready(d: &Value) -> String {
    format!(
        "ready {} · {}",
        d["label"].as_str().unwrap_or("?"),
        describe_limits(d)
    )
}

/// `max 2000 chars · markdown discord · threads · 8 ops`.
fn describe_limits(d: &Value) -> String {
    let mut parts = vec![format!(
        "max {} {}",
        d["max_message_length"],
        d["len_unit"].as_str().unwrap_or("chars")
    )];
    if let Some(dialect) = d["markdown_dialect"].as_str() {
        parts.push(format!("markdown {dialect}"));
    }
    if d["supports_threads"] == true {
        parts.push("threads".into());
    }
    if let Some(ops) = d["supported_ops"].as_array() {
        parts.push(format!("{} ops", ops.len()));
    }
    parts.join(" · ")
}

/// `message chat=… user=… text="…"`, with the type when it is not text, the
/// message it refers to, and the buffer id.
fn describe_message(event: &Value) -> String {
    let m = &event["message"];
    let mut text = String::from("message");
    if let Some(t) = m["message_type"].as_str().filter(|t| *t != "text") {
        text.push_str(&format!(" type={t}"));
    }
    let src = &m["source"];
    text.push_str(&format!(" chat={}", src["chat_id"].as_str().unwrap_or("?")));
    if let Some(user) = src["user_name"].as_str() {
        text.push_str(&format!(" user={user}"));
    }
    text.push_str(&format!(
        " text={}",
        quote(m["text"].as_str().unwrap_or(""))
    ));
    if let Some(on) = src["message_id"].as_str() {
        text.push_str(&format!(" on={on}"));
    }
    if let Some(b) = event["buffer_id"].as_str() {
        text.push_str(&format!(" buffer_id={b}"));
    }
    text
}

/// `success message_id=m1` or `failed: <error>`.
fn describe_result(result: &Value) -> String {
    if result["success"] == true {
        match result["message_id"].as_str() {
            Some(id) => format!("success message_id={id}"),
            None => "success".into(),
        }
    } else {
        format!("failed: {}", result["error"].as_str().unwrap_or("?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lines() {
        let ev = json!({"event": "message", "buffer_id": "buf-1", "message": {
            "text": "hi", "message_type": "command",
            "source": {"chat_id": "c1", "user_name": "Ada", "message_id": "m1"}}});
        assert_eq!(
            describe_message(&ev),
            r#"message type=command chat=c1 user=Ada text="hi" on=m1 buffer_id=buf-1"#
        );
        assert_eq!(
            describe_result(&json!({"success": false, "error": "nope"})),
            "failed: nope"
        );
    }

    #[test]
    fn descriptor_lines() {
        let d = json!({"label": "WhatsApp", "max_message_length": 4096, "len_unit": "chars",
                       "markdown_dialect": "plain", "supports_threads": false,
                       "supported_ops": ["send", "edit"]});
        assert_eq!(
            describe_ready(&d),
            "ready WhatsApp · max 4096 chars · markdown plain · 2 ops"
        );
        assert_eq!(
            describe_limits(&d),
            "max 4096 chars · markdown plain · 2 ops"
        );
    }
}
