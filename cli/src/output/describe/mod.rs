//! `describe` pages: a line writer with indentation levels whose output is
//! aligned like kubectl's, the blocks every kind shares (labels,
//! annotations, events, pod templates), and the dispatch per kind.

mod container;
mod node;
mod pod;
mod service;
mod workload;

use super::age::age;
use super::rows::event_last_seen;
use super::tabwriter;
use chrono::{DateTime, Utc};
use rkube_api::manifest;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{Endpoints, Event, Namespace, Pod};
use rkube_api::Object;
use std::collections::HashMap;

/// Annotations describe leaves out.
const SKIPPED_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// What a describe page shows beyond the object itself, fetched by the
/// caller.
#[derive(Debug, Clone)]
pub struct Related {
    /// Events whose involved object is this one.
    pub events: Vec<Event>,
    /// Pods a controller selects, or pods bound to a node.
    pub pods: Vec<Pod>,
    /// A service's endpoints.
    pub endpoints: Option<Endpoints>,
    pub now: DateTime<Utc>,
}

impl Related {
    pub fn empty(now: DateTime<Utc>) -> Related {
        Related {
            events: vec![],
            pods: vec![],
            endpoints: None,
            now,
        }
    }
}

/// Collects lines (cells separated by tabs) at indentation levels.
#[derive(Debug, Default)]
pub struct Writer {
    buf: String,
}

/// Makes text safe to put in one cell.
pub fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// A line at `level` (two spaces each); `\t` separates cells.
    pub fn line(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.buf.push_str("  ");
        }
        self.buf.push_str(text);
        self.buf.push('\n');
    }

    /// `key:` then the value in the next column.
    pub fn kv(&mut self, level: usize, key: &str, value: &str) {
        self.line(level, &format!("{key}:\t{}", clean(value)));
    }

    /// `key:` then the value, `<none>` when empty.
    pub fn kv_or_none(&mut self, level: usize, key: &str, value: &str) {
        if value.is_empty() {
            self.kv(level, key, "<none>");
        } else {
            self.kv(level, key, value);
        }
    }

    /// The aligned page.
    pub fn finish(self) -> String {
        tabwriter::align(&self.buf, 2)
    }
}

/// `Title:` with one `k=v` per line, sorted, or `<none>`.
pub fn labels_block(w: &mut Writer, level: usize, title: &str, labels: &HashMap<String, String>) {
    pairs_block(w, level, title, labels, "=", &[]);
}

/// `Annotations:` with one `k: v` per line.
pub fn annotations_block(w: &mut Writer, level: usize, annotations: &HashMap<String, String>) {
    pairs_block(
        w,
        level,
        "Annotations",
        annotations,
        ": ",
        &SKIPPED_ANNOTATIONS,
    );
}

fn pairs_block(
    w: &mut Writer,
    level: usize,
    title: &str,
    map: &HashMap<String, String>,
    sep: &str,
    skip: &[&str],
) {
    let mut pairs: Vec<(&String, &String)> = map
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        w.kv(level, title, "<none>");
        return;
    }
    for (i, (k, v)) in pairs.iter().enumerate() {
        let text = clean(&format!("{k}{sep}{v}"));
        if i == 0 {
            w.line(level, &format!("{title}:\t{text}"));
        } else {
            w.line(0, &format!("\t{text}"));
        }
    }
}

/// The `Events:` table, or `Events:  <none>`.
pub fn events_block(w: &mut Writer, events: &[Event], now: DateTime<Utc>) {
    if events.is_empty() {
        w.line(0, "Events:  <none>");
        return;
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| super::age::parse_time(&event_last_seen(e)));
    w.line(0, "Events:");
    w.line(1, "Type\tReason\tAge\tFrom\tMessage");
    w.line(1, "----\t------\t----\t----\t-------");
    for e in sorted {
        let last = event_last_seen(e);
        let first = if e.first_timestamp.is_empty() {
            last.clone()
        } else {
            e.first_timestamp.clone()
        };
        let when = if e.count > 1 {
            format!(
                "{} (x{} over {})",
                age(&last, now),
                e.count,
                age(&first, now)
            )
        } else {
            age(&first, now)
        };
        let src = e.source.clone().unwrap_or_default();
        let mut from = if src.component.is_empty() {
            e.reporting_component.clone()
        } else {
            src.component.clone()
        };
        if !src.host.is_empty() {
            from = format!("{from}, {}", src.host);
        }
        w.line(
            1,
            &format!(
                "{}\t{}\t{}\t{}\t{}",
                clean(&e.r#type),
                clean(&e.reason),
                when,
                clean(&from),
                clean(e.message.trim())
            ),
        );
    }
}

/// `N Running / N Waiting / N Succeeded / N Failed` of some pods.
pub fn pods_status(pods: &[Pod]) -> String {
    let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
    for p in pods {
        match p.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("") {
            "Running" => running += 1,
            "Succeeded" => succeeded += 1,
            "Failed" => failed += 1,
            _ => waiting += 1,
        }
    }
    format!("{running} Running / {waiting} Waiting / {succeeded} Succeeded / {failed} Failed")
}

fn describe_namespace(n: &Namespace, related: &Related) -> String {
    let meta = n.metadata.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    labels_block(&mut w, 0, "Labels", &meta.labels);
    annotations_block(&mut w, 0, &meta.annotations);
    let phase = n
        .status
        .as_ref()
        .map(|s| s.phase.clone())
        .unwrap_or_default();
    w.kv(
        0,
        "Status",
        if phase.is_empty() { "Active" } else { &phase },
    );
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

/// The describe page of any object; kinds without a page of their own are
/// shown as YAML.
pub fn describe(obj: &Object, related: &Related) -> String {
    match obj.kind.as_ref() {
        Some(Body::Pod(p)) => pod::describe(p, related),
        Some(Body::ReplicationController(rc)) => workload::describe_rc(rc, related),
        Some(Body::ReplicaSet(rs)) => workload::describe_rs(rs, related),
        Some(Body::DaemonSet(ds)) => workload::describe_ds(ds, related),
        Some(Body::Node(n)) => node::describe(n, related),
        Some(Body::Service(s)) => service::describe(s, related),
        Some(Body::Namespace(n)) => describe_namespace(n, related),
        _ => manifest::to_yaml_string(obj),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{EventSource, PodStatus};

    fn map(v: &[(&str, &str)]) -> HashMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_blocks_align_continuations() {
        let mut w = Writer::new();
        w.kv(0, "Name", "nginx-pod");
        w.kv(0, "Namespace", "default");
        labels_block(
            &mut w,
            0,
            "Labels",
            &map(&[("tier", "dev"), ("app", "nginx")]),
        );
        annotations_block(
            &mut w,
            0,
            &map(&[("kubectl.kubernetes.io/last-applied-configuration", "{}")]),
        );
        let want = "\
Name:         nginx-pod
Namespace:    default
Labels:       app=nginx
              tier=dev
Annotations:  <none>
";
        assert_eq!(w.finish(), want);
    }

    #[test]
    fn events_table_or_none() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let mut w = Writer::new();
        events_block(&mut w, &[], now);
        assert_eq!(w.finish(), "Events:  <none>\n");
        let ev = Event {
            r#type: "Normal".into(),
            reason: "Scheduled".into(),
            message: "Successfully assigned default/p to wn1".into(),
            first_timestamp: "2024-03-01T11:59:50Z".into(),
            last_timestamp: "2024-03-01T11:59:50Z".into(),
            count: 1,
            source: Some(EventSource {
                component: "default-scheduler".into(),
                host: String::new(),
            }),
            ..Default::default()
        };
        let mut w = Writer::new();
        events_block(&mut w, &[ev], now);
        let want = "\
Events:
  Type    Reason     Age   From               Message
  ----    ------     ----  ----               -------
  Normal  Scheduled  10s   default-scheduler  Successfully assigned default/p to wn1
";
        assert_eq!(w.finish(), want);
    }

    #[test]
    fn pod_phases_are_counted() {
        let pod = |phase: &str| Pod {
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = [
            pod("Running"),
            pod("Running"),
            pod("Pending"),
            pod("Failed"),
        ];
        assert_eq!(
            pods_status(&pods),
            "2 Running / 1 Waiting / 0 Succeeded / 1 Failed"
        );
    }
}
