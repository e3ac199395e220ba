//! Label and field selectors (rkube-api's `selector`): the `-l` syntax, and
//! matchLabels/matchExpressions from a protobuf `LabelSelector`.
//!
//! Invariants: nothing panics; a selector that parses prints (Display) to
//! text that parses to the same selector; a structured selector prints to
//! `-l` text that parses to it too; matching never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rkube_api::proto;
use rkube_api::selector::{FieldSelector, LabelSelector};
use std::collections::HashMap;

/// Labels to match against, made from the same input: `k=v` pairs.
fn labels(text: &str) -> HashMap<String, String> {
    text.split([',', ' ', '(', ')'])
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (!k.is_empty()).then(|| (k.trim_matches('!').to_string(), v.to_string()))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let l = labels(text);
        if let Ok(sel) = LabelSelector::parse(text) {
            let shown = sel.to_string();
            let back = LabelSelector::parse(&shown)
                .unwrap_or_else(|e| panic!("{text:?} printed as {shown:?}, which fails: {e}"));
            assert_eq!(back, sel, "{text:?} printed as {shown:?}");
            let _ = sel.matches(&l);
            let _ = sel.matches(&HashMap::new());
        }
        if let Ok(sel) = FieldSelector::parse(text) {
            let shown = sel.to_string();
            let back = FieldSelector::parse(&shown)
                .unwrap_or_else(|e| panic!("{text:?} printed as {shown:?}, which fails: {e}"));
            assert_eq!(back, sel, "{text:?} printed as {shown:?}");
            let _ = sel.matches(|f| l.get(f).cloned());
            let _ = sel.fields().count();
        }
    }
    if let Ok(p) = proto::LabelSelector::decode(data) {
        if let Ok(sel) = LabelSelector::from_proto(&p) {
            let shown = sel.to_string();
            let back = LabelSelector::parse(&shown)
                .unwrap_or_else(|e| panic!("{p:?} printed as {shown:?}, which fails: {e}"));
            assert_eq!(back, sel, "{p:?} printed as {shown:?}");
            let _ = sel.matches(&p.match_labels);
        }
    }
});
