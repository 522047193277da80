//! Arbitrary bytes as one line → `codec::decode`, at the default limit and at a
//! small one taken from the first byte.
//!
//! Checks: nothing panics; the small limit rejects exactly the longer lines with
//! `too_large` and otherwise agrees with the default; `decode_str` agrees with
//! `decode` on UTF-8; an Ok frame's `to_json()` is an object with a string
//! `type`; the typed reader gives the same frame for the line and for its
//! `Value` re-serialisation (it must depend on the JSON value only); and a
//! delivered message's hand-written JSON text equals its `Value` text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_logic::codec::{self, ConnectorFrame, DEFAULT_MAX_LINE_BYTES};
use relay_logic::session::AppEvent;
use relay_logic::ErrorKind;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let whole = codec::decode(data, DEFAULT_MAX_LINE_BYTES);

    if let Some((&first, rest)) = data.split_first() {
        let limit = usize::from(first % 64) + 1;
        let small = codec::decode(rest, limit);
        if rest.len() > limit {
            let e = small.expect_err("a line over the limit decoded");
            assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        } else {
            assert_eq!(small, codec::decode(rest, DEFAULT_MAX_LINE_BYTES));
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(codec::decode_str(text, DEFAULT_MAX_LINE_BYTES), whole);
        // The frame rules see the JSON value, not its spelling.
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            assert_eq!(
                codec::decode_value(&value),
                whole,
                "line and its re-serialisation decode differently"
            );
        } else if let Err(e) = &whole {
            assert_eq!(e.kind, ErrorKind::MalformedJson, "{e}");
        } else {
            panic!("a line that is not JSON decoded");
        }
    }

    if let Ok(frame) = &whole {
        let json = frame.to_json();
        let ty = json
            .as_object()
            .expect("to_json is not an object")
            .get("type")
            .and_then(Value::as_str)
            .expect("to_json has no string type");
        assert!(!ty.is_empty());
        let text = serde_json::to_string(&json).expect("frame JSON does not serialise");
        let back: Value = serde_json::from_str(&text).expect("frame JSON does not parse back");
        assert_eq!(back, json);
        if let ConnectorFrame::Inbound { event, buffer_id } = frame {
            let ev = AppEvent::message(event.clone(), buffer_id.clone());
            assert_eq!(ev.to_json_string(), ev.to_value().to_string());
        }
    }
});
