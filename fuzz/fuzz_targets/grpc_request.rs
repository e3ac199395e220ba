//! The gRPC request decoders: prost decoding of every request of the
//! `rkube.v1.Api` service and of the replicas' internal messages (a
//! `RaftBatch` from a peer; a committed `Proposal`/`Txn`; a `StateSnapshot`),
//! followed by what the server does with a decoded request before storing
//! it: type metadata, defaulting, validation, selector and kind parsing,
//! the merge patch; and for committed entries, the state machine's `apply`
//! (a replica applying garbage must not crash) and snapshot/restore.
//!
//! The first byte picks the message type; the rest is its encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use protobuf::Message as _;
use rkube_api::kinds::{self, Kind};
use rkube_api::proto::{self, internal};
use rkube_api::selector::{FieldSelector, LabelSelector};
use rkube_api::{defaults, validation, Object};
use rkube_control_plane::handlers::merge_patch;
use rkube_control_plane::state_machine::StateMachine;

/// What create and update do with a request's object before storing it
/// (control-plane/src/handlers.rs), minus the store.
fn admit(mut obj: Object) {
    let Some(kind) = obj.kind() else {
        return;
    };
    let before = obj.clone();
    obj.set_type_meta();
    defaults::apply_defaults(&mut obj);
    let _ = validation::validate(&obj);
    let _ = validation::validate_update(&before, &obj);
    let _ = obj.encoded_len();
    if let Some(m) = obj.metadata() {
        let _ = kind.key(&m.namespace, &m.name);
    }
    // The JSON form (watch events, -o json, patches) must map back.
    let _ = kinds::from_json(kind, obj.to_json());
}

fn selectors(label: &str, field: &str, kind: &str) {
    let _ = LabelSelector::parse(label);
    let _ = FieldSelector::parse(field);
    let _ = Kind::from_name(kind);
}

fn apply(sm: &mut StateMachine, txn: internal::Txn) {
    let _ = sm.apply(txn.clone());
    let _ = sm.apply(txn);
    let snap = sm.snapshot();
    let mut other = StateMachine::new(16);
    other.restore(&snap).expect("a snapshot restores");
    assert_eq!(other.revision(), sm.revision());
    assert_eq!(other.len(), sm.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => {
            if let Ok(r) = proto::CreateRequest::decode(bytes) {
                admit(r.object.unwrap_or_default());
            }
        }
        1 => {
            if let Ok(r) = proto::UpdateRequest::decode(bytes) {
                admit(r.object.unwrap_or_default());
            }
        }
        2 => {
            if let Ok(r) = proto::PatchRequest::decode(bytes) {
                let Some(kind) = Kind::from_name(&r.kind) else {
                    return;
                };
                let Ok(doc) = serde_json::from_str::<serde_json::Value>(&r.patch) else {
                    return;
                };
                if !doc.is_object() {
                    return;
                }
                let mut v = serde_json::json!({
                    "apiVersion": kind.api_version(),
                    "kind": kind.name(),
                    "metadata": {"name": "fuzz", "namespace": "default"},
                });
                merge_patch(&mut v, &doc);
                if let Ok(obj) = kinds::from_json(kind, v) {
                    admit(obj);
                }
            }
        }
        3 => {
            if let Ok(r) = proto::ListRequest::decode(bytes) {
                selectors(&r.label_selector, &r.field_selector, &r.kind);
            }
        }
        4 => {
            if let Ok(r) = proto::WatchRequest::decode(bytes) {
                selectors(&r.label_selector, &r.field_selector, &r.kind);
            }
        }
        5 => {
            if let Ok(r) = proto::GetRequest::decode(bytes) {
                let _ = Kind::from_name(&r.kind);
            }
        }
        6 => {
            if let Ok(r) = proto::DeleteRequest::decode(bytes) {
                let _ = Kind::from_name(&r.kind);
            }
        }
        7 => {
            let _ = proto::ScaleRequest::decode(bytes);
            let _ = proto::BindRequest::decode(bytes);
            let _ = proto::ClusterStatusRequest::decode(bytes);
        }
        8 => {
            if let Ok(b) = internal::RaftBatch::decode(bytes) {
                for m in &b.messages {
                    let _ = raft::eraftpb::Message::parse_from_bytes(m);
                }
            }
        }
        9 => {
            // A committed entry, as raft_node.rs applies it.
            if let Ok(p) = internal::Proposal::decode(bytes) {
                let mut sm = StateMachine::new(16);
                apply(&mut sm, p.txn.unwrap_or_default());
            }
        }
        10 => {
            if let Ok(t) = internal::Txn::decode(bytes) {
                let mut sm = StateMachine::new(16);
                apply(&mut sm, t);
            }
        }
        _ => {
            let mut sm = StateMachine::new(16);
            if sm.restore(bytes).is_ok() {
                let _ = sm.snapshot();
            }
        }
    }
});
