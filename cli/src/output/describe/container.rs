//! Container blocks, shared by pod pages and the pod templates of
//! controllers: image, ports, state, resources, probes, environment, mounts.

use super::{clean, labels_block, Writer};
use crate::output::age::describe_time;
use rkube_api::proto::{
    Container, ContainerPort, ContainerState, ContainerStatus, PodTemplateSpec, Probe, Volume,
};
use std::collections::HashMap;

fn proto(p: &str) -> &str {
    if p.is_empty() {
        "TCP"
    } else {
        p
    }
}

fn ports_lines(w: &mut Writer, ports: &[ContainerPort]) {
    let list = |f: &dyn Fn(&ContainerPort) -> i32| -> String {
        ports
            .iter()
            .map(|p| format!("{}/{}", f(p), proto(&p.protocol)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match ports.len() {
        0 => {
            w.kv(2, "Port", "<none>");
            w.kv(2, "Host Port", "<none>");
        }
        1 => {
            w.kv(2, "Port", &list(&|p| p.container_port));
            w.kv(2, "Host Port", &list(&|p| p.host_port));
        }
        _ => {
            w.kv(2, "Ports", &list(&|p| p.container_port));
            w.kv(2, "Host Ports", &list(&|p| p.host_port));
        }
    }
}

fn state_lines(w: &mut Writer, title: &str, state: &ContainerState) {
    if let Some(r) = &state.running {
        w.kv(2, title, "Running");
        w.kv(3, "Started", &describe_time(&r.started_at));
    } else if let Some(wt) = &state.waiting {
        w.kv(2, title, "Waiting");
        if !wt.reason.is_empty() {
            w.kv(3, "Reason", &wt.reason);
        }
        if !wt.message.is_empty() {
            w.kv(3, "Message", &wt.message);
        }
    } else if let Some(t) = &state.terminated {
        w.kv(2, title, "Terminated");
        if !t.reason.is_empty() {
            w.kv(3, "Reason", &t.reason);
        }
        if !t.message.is_empty() {
            w.kv(3, "Message", &t.message);
        }
        w.kv(3, "Exit Code", &t.exit_code.to_string());
        if t.signal != 0 {
            w.kv(3, "Signal", &t.signal.to_string());
        }
        w.kv(3, "Started", &describe_time(&t.started_at));
        w.kv(3, "Finished", &describe_time(&t.finished_at));
    } else {
        w.kv(2, title, "Waiting");
    }
}

fn resource_lines(w: &mut Writer, title: &str, m: &HashMap<String, String>) {
    if m.is_empty() {
        return;
    }
    w.line(2, &format!("{title}:"));
    let mut pairs: Vec<_> = m.iter().collect();
    pairs.sort();
    for (k, v) in pairs {
        w.kv(3, k, v);
    }
}

/// A probe as one line: `http-get http://:80/ delay=0s timeout=1s ...`.
pub fn probe_text(p: &Probe) -> String {
    let action = if let Some(h) = &p.http_get {
        let scheme = if h.scheme.is_empty() {
            "http"
        } else {
            &h.scheme
        };
        format!(
            "http-get {}://{}:{}{}",
            scheme.to_ascii_lowercase(),
            h.host,
            h.port,
            h.path
        )
    } else if let Some(t) = &p.tcp_socket {
        format!("tcp-socket {}:{}", t.host, t.port)
    } else if let Some(e) = &p.exec {
        format!("exec [{}]", e.command.join(" "))
    } else {
        "unknown".to_string()
    };
    let or = |v: i32, d: i32| if v == 0 { d } else { v };
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds,
        or(p.timeout_seconds, 1),
        or(p.period_seconds, 10),
        or(p.success_threshold, 1),
        or(p.failure_threshold, 3)
    )
}

/// One container: `name:` at level 1 (with `prefix` before it), its fields
/// at level 2. `status` is the container's status on a pod page.
pub fn container_block(
    w: &mut Writer,
    c: &Container,
    status: Option<&ContainerStatus>,
    prefix: &str,
    on_pod: bool,
) {
    w.line(1, &format!("{prefix}{}:", clean(&c.name)));
    if let Some(s) = status.filter(|s| !s.container_id.is_empty()) {
        w.kv(2, "Container ID", &s.container_id);
    }
    w.kv(2, "Image", &c.image);
    if let Some(s) = status {
        w.kv(2, "Image ID", &s.image_id);
    }
    ports_lines(w, &c.ports);
    for (title, items) in [("Command", &c.command), ("Args", &c.args)] {
        if !items.is_empty() {
            w.line(2, &format!("{title}:"));
            for i in items {
                w.line(3, &clean(i));
            }
        }
    }
    if on_pod {
        if let Some(s) = status {
            if let Some(st) = &s.state {
                state_lines(w, "State", st);
            }
            if let Some(last) = &s.last_state {
                if last.running.is_some() || last.waiting.is_some() || last.terminated.is_some() {
                    state_lines(w, "Last State", last);
                }
            }
        }
        let ready = status.is_some_and(|s| s.ready);
        w.kv(2, "Ready", if ready { "True" } else { "False" });
        w.kv(
            2,
            "Restart Count",
            &status.map(|s| s.restart_count).unwrap_or(0).to_string(),
        );
    }
    if let Some(r) = &c.resources {
        resource_lines(w, "Limits", &r.limits);
        resource_lines(w, "Requests", &r.requests);
    }
    for (title, probe) in [
        ("Liveness", &c.liveness_probe),
        ("Readiness", &c.readiness_probe),
        ("Startup", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            w.kv(2, title, &probe_text(p));
        }
    }
    if c.env.is_empty() {
        w.kv(2, "Environment", "<none>");
    } else {
        w.line(2, "Environment:");
        for e in &c.env {
            w.kv(3, &e.name, &e.value);
        }
    }
    if c.volume_mounts.is_empty() {
        w.kv(2, "Mounts", "<none>");
    } else {
        w.line(2, "Mounts:");
        for m in &c.volume_mounts {
            let mode = if m.read_only { "ro" } else { "rw" };
            let sub = if m.sub_path.is_empty() {
                String::new()
            } else {
                format!(",path={:?}", m.sub_path)
            };
            w.line(
                3,
                &clean(&format!("{} from {} ({mode}{sub})", m.mount_path, m.name)),
            );
        }
    }
}

/// `Volumes:` with each volume's source, or `<none>`.
pub fn volumes_block(w: &mut Writer, level: usize, volumes: &[Volume]) {
    if volumes.is_empty() {
        w.kv(level, "Volumes", "<none>");
        return;
    }
    w.line(level, "Volumes:");
    for v in volumes {
        w.line(level + 1, &format!("{}:", clean(&v.name)));
        if let Some(h) = &v.host_path {
            w.kv(level + 2, "Type", "HostPath (bare host directory volume)");
            w.kv(level + 2, "Path", &h.path);
            w.kv(level + 2, "HostPathType", &h.r#type);
        } else if let Some(e) = &v.empty_dir {
            w.kv(
                level + 2,
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            w.kv(level + 2, "Medium", &e.medium);
            let limit = if e.size_limit.is_empty() {
                "<unset>"
            } else {
                &e.size_limit
            };
            w.kv(level + 2, "SizeLimit", limit);
        } else {
            w.kv(level + 2, "Type", "<unknown>");
        }
    }
}

/// A controller's `Pod Template:` section.
pub fn pod_template_block(w: &mut Writer, t: Option<&PodTemplateSpec>) {
    w.line(0, "Pod Template:");
    let Some(t) = t else {
        w.line(1, "<none>");
        return;
    };
    let labels = t
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels_block(w, 1, "Labels", &labels);
    let spec = t.spec.clone().unwrap_or_default();
    if !spec.init_containers.is_empty() {
        w.line(1, "Init Containers:");
        for c in &spec.init_containers {
            container_block(w, c, None, " ", false);
        }
    }
    w.line(1, "Containers:");
    for c in &spec.containers {
        container_block(w, c, None, " ", false);
    }
    volumes_block(w, 1, &spec.volumes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{ObjectMeta, PodSpec};

    #[test]
    fn template_section_reads_like_kubectl() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [("app".to_string(), "nginx-app".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx-container".into(),
                    image: "nginx".into(),
                    ports: vec![ContainerPort {
                        container_port: 80,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let mut w = Writer::new();
        pod_template_block(&mut w, Some(&t));
        let want = "\
Pod Template:
  Labels:  app=nginx-app
  Containers:
   nginx-container:
    Image:        nginx
    Port:         80/TCP
    Host Port:    0/TCP
    Environment:  <none>
    Mounts:       <none>
  Volumes:        <none>
";
        assert_eq!(w.finish(), want);
    }

    #[test]
    fn probes_read_as_one_line() {
        let p = Probe {
            http_get: Some(rkube_api::proto::HttpGetAction {
                path: "/healthz".into(),
                port: "8080".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_text(&p),
            "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"
        );
    }
}
