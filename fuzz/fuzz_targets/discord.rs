//! A passthrough forward → `discord::interaction_to_event`.
//!
//! Two modes (first byte): arbitrary body bytes on a Forward with platform
//! "discord", or a JSON interaction built from the fuzzer's choices (types 2/3/5
//! in every spelling, nested options, modal components, prompt tokens, members,
//! channels, duplicate keys, odd numbers).
//!
//! Checks: nothing panics; a non-Discord platform is always dropped; the typed
//! read accepts exactly the bodies a `Value` parse accepts, and the result
//! depends on the JSON value only (same outcome for the body and for its `Value`
//! re-serialisation); an Ok event serialises, and its hand-written JSON text
//! (what hosts send) equals its `Value` text.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use relay_logic::discord::interaction_to_event;
use relay_logic::forward::Forward;
use relay_logic::session::AppEvent;
use relay_logic_fuzz::interaction;
use serde_json::Value;

fn forward(body: Vec<u8>, profile: Option<String>) -> Forward {
    Forward {
        platform: "discord".into(),
        bot_id: "app1".into(),
        method: "POST".into(),
        path: "/interactions/discord/app1".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        profile,
    }
}

fn check(body: Vec<u8>, profile: Option<String>) {
    let f = forward(body, profile);
    let got = interaction_to_event(&f);

    // The platform test is exact and comes first.
    let mut other = f.clone();
    other.platform = "Discord".into();
    assert!(interaction_to_event(&other).is_err());

    // Typed read vs a full `Value` parse of the same body.
    match std::str::from_utf8(&f.body) {
        Err(_) => assert!(got.is_err(), "a body that is not UTF-8 converted"),
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Err(_) => {
                let reason = got.as_ref().expect_err("a body that is not JSON converted");
                assert_eq!(reason.reason, "body is not valid JSON");
            }
            Ok(value) => {
                if let Err(d) = &got {
                    assert_ne!(d.reason, "body is not valid JSON", "a JSON body rejected");
                }
                if !value.is_object() {
                    assert!(got.is_err(), "a non-object body converted");
                }
                let respelled = forward(value.to_string().into_bytes(), f.profile.clone());
                assert_eq!(
                    interaction_to_event(&respelled),
                    got,
                    "body and its re-serialisation convert differently"
                );
            }
        },
    }

    if let Ok(event) = got {
        let json = event.to_json();
        assert!(json.is_object(), "event JSON is not an object");
        let text = serde_json::to_string(&event).expect("event does not serialise");
        assert_eq!(text, json.to_string());
        let ev = AppEvent::message(event, Some("b1".into()));
        assert_eq!(ev.to_json_string(), ev.to_value().to_string());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 4 == 0 {
        check(rest.to_vec(), None);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(doc) = interaction(&mut u, None) else {
        return;
    };
    let profile = if mode % 4 == 3 {
        Some("p1".to_string())
    } else {
        None
    };
    let mut body = doc.to_text().into_bytes();
    if mode % 16 == 5 {
        // Spelling variants: a BOM, trailing garbage, surrounding whitespace.
        match u.int_in_range(0u8..=2).unwrap_or(0) {
            0 => body = [&b"\xEF\xBB\xBF"[..], &body].concat(),
            1 => body.push(b'}'),
            _ => body = [&b" \r\n\t"[..], &body].concat(),
        }
    }
    check(body, profile);
});
