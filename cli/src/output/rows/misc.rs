//! Namespace, Event and Lease rows.

use crate::output::age::age;
use chrono::{DateTime, Utc};
use rkube_api::proto::{Event, Lease, Namespace};

pub fn namespace_columns() -> Vec<&'static str> {
    vec!["NAME", "STATUS", "AGE"]
}

pub fn event_columns() -> Vec<&'static str> {
    vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
}

pub fn lease_columns() -> Vec<&'static str> {
    vec!["NAME", "HOLDER", "AGE"]
}

pub fn namespace_row(n: &Namespace, now: DateTime<Utc>) -> Vec<String> {
    let meta = n.metadata.clone().unwrap_or_default();
    let phase = n.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    let phase = if !meta.deletion_timestamp.is_empty() && phase.is_empty() {
        "Terminating"
    } else if phase.is_empty() {
        "Active"
    } else {
        phase
    };
    vec![
        meta.name.clone(),
        phase.to_string(),
        age(&meta.creation_timestamp, now),
    ]
}

/// When an event was last seen: its last timestamp, else its first, else
/// its creation.
pub fn event_last_seen(e: &Event) -> String {
    let created = e
        .metadata
        .as_ref()
        .map(|m| m.creation_timestamp.clone())
        .unwrap_or_default();
    [e.last_timestamp.clone(), e.first_timestamp.clone(), created]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

pub fn event_row(e: &Event, now: DateTime<Utc>) -> Vec<String> {
    let obj = e.involved_object.clone().unwrap_or_default();
    vec![
        age(&event_last_seen(e), now),
        e.r#type.clone(),
        e.reason.clone(),
        format!("{}/{}", obj.kind.to_ascii_lowercase(), obj.name),
        e.message.clone(),
    ]
}

pub fn lease_row(l: &Lease, now: DateTime<Utc>) -> Vec<String> {
    let meta = l.metadata.clone().unwrap_or_default();
    let holder = l
        .spec
        .as_ref()
        .map(|s| s.holder_identity.clone())
        .unwrap_or_default();
    vec![
        meta.name.clone(),
        holder,
        age(&meta.creation_timestamp, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{LeaseSpec, ObjectMeta, ObjectReference};

    #[test]
    fn rows() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let ns = Namespace {
            metadata: Some(ObjectMeta {
                name: "default".into(),
                creation_timestamp: "2024-03-01T11:59:50Z".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(namespace_row(&ns, now), ["default", "Active", "10s"]);
        let ev = Event {
            involved_object: Some(ObjectReference {
                kind: "Pod".into(),
                name: "nginx-pod".into(),
                ..Default::default()
            }),
            reason: "Scheduled".into(),
            message: "Successfully assigned default/nginx-pod to wn1".into(),
            r#type: "Normal".into(),
            first_timestamp: "2024-03-01T11:58:00Z".into(),
            ..Default::default()
        };
        assert_eq!(
            event_row(&ev, now),
            [
                "2m".to_string(),
                "Normal".into(),
                "Scheduled".into(),
                "pod/nginx-pod".into(),
                "Successfully assigned default/nginx-pod to wn1".into()
            ]
        );
        let l = Lease {
            metadata: Some(ObjectMeta {
                name: "wn1".into(),
                ..Default::default()
            }),
            spec: Some(LeaseSpec {
                holder_identity: "wn1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(lease_row(&l, now), ["wn1", "wn1", "<unknown>"]);
    }
}
