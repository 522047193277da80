//! Arbitrary bytes cut at arbitrary chunk boundaries → `LineBuffer::push` per
//! chunk.
//!
//! Checks: the lines produced equal those of feeding the whole input at once;
//! `pending()` never exceeds the limit; every `Data` line is non-blank, within
//! the limit and free of `\n`; and once the input ends in `\n` nothing is pending.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use relay_logic::lines::{Line, LineBuffer};

#[derive(Debug)]
struct Input {
    limit: usize,
    bytes: Vec<u8>,
    /// Chunk lengths; what is left after the last one is the final chunk.
    cuts: Vec<usize>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Mostly small limits, so overlong lines (also across chunks) are common.
        let limit = match u.int_in_range(0u8..=3)? {
            0 => u.int_in_range(1..=8)?,
            1 => u.int_in_range(1..=64)?,
            2 => u.int_in_range(1..=4096)?,
            _ => relay_logic::codec::DEFAULT_MAX_LINE_BYTES,
        };
        let cuts: Vec<u8> = u.arbitrary()?;
        let bytes = u.bytes(u.len())?.to_vec();
        Ok(Input {
            limit,
            bytes,
            cuts: cuts.into_iter().map(usize::from).collect(),
        })
    }
}

fn check_line(line: &Line, limit: usize) {
    if let Line::Data(d) = line {
        assert!(d.len() <= limit, "a line over the limit came out");
        assert!(!d.contains(&b'\n'), "a line holds a newline");
        assert!(
            d.iter().any(|b| !b.is_ascii_whitespace()),
            "a blank line came out"
        );
    }
}

fuzz_target!(|input: Input| {
    let Input { limit, bytes, cuts } = input;

    let mut whole = LineBuffer::new(limit);
    let want = whole.push(&bytes);
    assert!(whole.pending() <= limit);

    let mut chunked = LineBuffer::new(limit);
    let mut got = Vec::new();
    let mut rest = &bytes[..];
    for n in cuts {
        let n = n.min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        got.extend(chunked.push(chunk));
        assert!(chunked.pending() <= limit, "pending over the limit");
        rest = tail;
    }
    got.extend(chunked.push(rest));
    assert!(chunked.pending() <= limit, "pending over the limit");

    for line in &want {
        check_line(line, limit);
    }
    // `TooLarge { seen }` depends on where the limit was crossed, which depends on
    // the chunking; what must not depend on it is which lines come out, in order.
    let shape = |lines: &[Line]| -> Vec<Option<Vec<u8>>> {
        lines
            .iter()
            .map(|l| match l {
                Line::Data(d) => Some(d.clone()),
                Line::TooLarge { .. } => None,
            })
            .collect()
    };
    assert_eq!(shape(&got), shape(&want), "chunking changed the lines");
    assert_eq!(chunked.pending(), whole.pending());
    for line in &got {
        if let Line::TooLarge { seen } = line {
            assert!(*seen > limit, "too_large for {seen} bytes");
        }
    }
    if bytes.last() == Some(&b'\n') {
        assert_eq!(whole.pending(), 0);
    }
});
