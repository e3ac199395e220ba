//! Validation of objects before they are stored, reporting every problem with
//! a Kubernetes-style field path (`spec.containers[0].ports[1].containerPort`)
//! and message (`Required value`, `Invalid value: ...`, `Unsupported value: ...`).
//!
//! [`validate`] checks one object as a create would; [`validate_update`] also
//! checks what an update may not change. The helpers for names, label keys and
//! values, quantities and port names are public for other checks to share.

use crate::proto::{self, object::Kind, Object, ObjectMeta};
use crate::selector::LabelSelector;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

// ---------------------------------------------------------------- errors

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Where, e.g. `spec.template.metadata.labels`.
    pub path: String,
    /// What, e.g. `Invalid value: "x": must be ...` or `Required value`.
    pub message: String,
}

impl FieldError {
    /// A field error with a ready-made message.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// `Required value`, or `Required value: <detail>`.
    pub fn required(path: impl Into<String>, detail: &str) -> FieldError {
        FieldError::new(path, with_detail("Required value", detail))
    }

    /// `Invalid value: <value>: <detail>`; `value` is shown as given, so quote
    /// strings with [`quote`].
    pub fn invalid(path: impl Into<String>, value: impl fmt::Display, detail: &str) -> FieldError {
        FieldError::new(
            path,
            with_detail(&format!("Invalid value: {value}"), detail),
        )
    }

    /// `Unsupported value: "x": supported values: "A", "B"`.
    pub fn not_supported(path: impl Into<String>, value: &str, supported: &[&str]) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
        FieldError::new(
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                quote(value),
                list.join(", ")
            ),
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: impl Into<String>, value: impl fmt::Display) -> FieldError {
        FieldError::new(path, format!("Duplicate value: {value}"))
    }

    /// `Not found: <value>`.
    pub fn not_found(path: impl Into<String>, value: impl fmt::Display) -> FieldError {
        FieldError::new(path, format!("Not found: {value}"))
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(path: impl Into<String>, detail: &str) -> FieldError {
        FieldError::new(path, with_detail("Forbidden", detail))
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(path: impl Into<String>, max: usize) -> FieldError {
        FieldError::new(path, format!("Too long: may not be more than {max} bytes"))
    }
}

fn with_detail(head: &str, detail: &str) -> String {
    if detail.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {detail}")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with one object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} {name:?} is invalid: {}", join_errors(.errors))]
pub struct ValidationErrors {
    /// The object's kind, e.g. `ReplicaSet`.
    pub kind: String,
    /// The object's name (may be empty).
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// Whether some error is at exactly `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
}

fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A string as it appears inside a message: double-quoted and escaped.
pub fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A string map as compact JSON with sorted keys, e.g. `{"app":"api"}`.
fn json_map(m: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = m.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "{}".to_string())
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| quote(s))
}

/// A structured label selector as compact JSON, in a stable order.
fn json_selector(s: &proto::LabelSelector) -> String {
    let mut parts = Vec::new();
    if !s.match_labels.is_empty() {
        parts.push(format!("\"matchLabels\":{}", json_map(&s.match_labels)));
    }
    if !s.match_expressions.is_empty() {
        let exprs: Vec<String> = s
            .match_expressions
            .iter()
            .map(|e| {
                let values: Vec<String> = e.values.iter().map(|v| json_str(v)).collect();
                format!(
                    "{{\"key\":{},\"operator\":{},\"values\":[{}]}}",
                    json_str(&e.key),
                    json_str(&e.operator),
                    values.join(",")
                )
            })
            .collect();
        parts.push(format!("\"matchExpressions\":[{}]", exprs.join(",")));
    }
    format!("{{{}}}", parts.join(","))
}

// ---------------------------------------------------------------- names, labels, quantities

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
     characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must \
     start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')";

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// One dot-free part of a DNS-1123 name, without a length limit.
fn is_dns1123_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// A DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX && is_dns1123_part(s)
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated parts of
/// `[a-z0-9-]`, each starting and ending alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_dns1123_part)
}

/// Why `s` is not a DNS-1123 label.
pub fn dns1123_label_error(s: &str) -> Option<String> {
    if s.len() > DNS1123_LABEL_MAX {
        Some(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ))
    } else if !is_dns1123_part(s) {
        Some(DNS1123_LABEL_MSG.to_string())
    } else {
        None
    }
}

/// Why `s` is not a DNS-1123 subdomain.
pub fn dns1123_subdomain_error(s: &str) -> Option<String> {
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        Some(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ))
    } else if !s.split('.').all(is_dns1123_part) {
        Some(DNS1123_SUBDOMAIN_MSG.to_string())
    } else {
        None
    }
}

/// `[A-Za-z0-9._-]*`, starting and ending alphanumeric (when non-empty).
fn is_label_charset(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label (or annotation) key: an optional DNS-1123 subdomain prefix and
/// '/', then a name of at most 63 `[A-Za-z0-9._-]` starting and ending
/// alphanumeric. The error says which part is wrong.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err("prefix part must be non-empty".to_string());
            }
            if let Some(why) = dns1123_subdomain_error(prefix) {
                return Err(format!("prefix part {why}"));
            }
            name
        }
        _ => {
            return Err(format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            ));
        }
    };
    if name.is_empty() {
        return Err("name part must be non-empty".to_string());
    }
    if name.len() > QUALIFIED_NAME_MAX {
        return Err(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !is_label_charset(name) {
        return Err(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    Ok(())
}

/// A label value: empty, or at most 63 `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.len() > LABEL_VALUE_MAX {
        return Err(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !value.is_empty() && !is_label_charset(value) {
        return Err(LABEL_VALUE_MSG.to_string());
    }
    Ok(())
}

/// Checks every key and value of a label map (in key order), reporting at `path`.
pub fn validate_labels(labels: &HashMap<String, String>, path: &str, errs: &mut Vec<FieldError>) {
    let sorted: BTreeMap<&String, &String> = labels.iter().collect();
    for (k, v) in sorted {
        if let Err(why) = validate_label_key(k) {
            errs.push(FieldError::invalid(path, quote(k), &why));
        }
        if let Err(why) = validate_label_value(v) {
            errs.push(FieldError::invalid(path, quote(v), &why));
        }
    }
}

/// Checks annotation keys (as label keys) and the total size, reporting at `path`.
pub fn validate_annotations(
    annotations: &HashMap<String, String>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut keys: Vec<&String> = annotations.keys().collect();
    keys.sort();
    for k in keys {
        if let Err(why) = validate_label_key(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, quote(k), &why));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
}

/// A Kubernetes resource quantity: an optionally signed decimal number
/// (`1`, `0.5`, `.5`, `5.`) with an optional suffix — `n u m k M G T P E`,
/// `Ki Mi Gi Ti Pi Ei`, or an exponent `e3`/`E-3`.
pub fn is_valid_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    if number.matches('.').count() > 1 || !number.contains(|c: char| c.is_ascii_digit()) {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        _ => match suffix.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
    }
}

/// Whether a valid quantity is below zero: a '-' sign and a non-zero mantissa.
fn is_negative_quantity(q: &str) -> bool {
    q.strip_prefix('-').is_some_and(|rest| {
        rest.chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .any(|c| ('1'..='9').contains(&c))
    })
}

/// Why `s` is not an IANA service name (a named port): at most 15 of
/// `[a-z0-9-]`, at least one letter, no leading, trailing or double '-'.
pub fn port_name_error(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("must be non-empty")
    } else if s.len() > 15 {
        Some("must be no more than 15 characters")
    } else if !s.chars().all(|c| is_lower_alnum(c) || c == '-') {
        Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    } else if s.contains("--") {
        Some("must not contain consecutive hyphens")
    } else if !s.contains(|c: char| c.is_ascii_lowercase()) {
        Some("must contain at least one letter (a-z)")
    } else if s.starts_with('-') || s.ends_with('-') {
        Some("must not begin or end with a hyphen")
    } else {
        None
    }
}

/// Whether `s` is a valid named port (IANA service name).
pub fn is_valid_port_name(s: &str) -> bool {
    port_name_error(s).is_none()
}

/// An IPv4 or IPv6 address.
pub fn is_valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IPv4 or IPv6 CIDR such as `10.244.0.0/24`.
pub fn is_valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.chars().all(|c| c.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|b| b <= max)
}

// ---------------------------------------------------------------- small checks

const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

fn push_range(errs: &mut Vec<FieldError>, path: &str, value: i64, lo: i64, hi: i64) {
    if value < lo || value > hi {
        errs.push(FieldError::invalid(
            path,
            value,
            &format!("must be between {lo} and {hi}, inclusive"),
        ));
    }
}

fn push_non_negative(errs: &mut Vec<FieldError>, path: &str, value: i64) {
    if value < 0 {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// Empty is allowed (defaulting fills it in).
fn push_supported(errs: &mut Vec<FieldError>, path: &str, value: &str, supported: &[&str]) {
    if !value.is_empty() && !supported.contains(&value) {
        errs.push(FieldError::not_supported(path, value, supported));
    }
}

fn push_label_name(errs: &mut Vec<FieldError>, path: &str, value: &str) {
    if let Some(why) = dns1123_label_error(value) {
        errs.push(FieldError::invalid(path, quote(value), &why));
    }
}

fn push_subdomain(errs: &mut Vec<FieldError>, path: &str, value: &str) {
    if let Some(why) = dns1123_subdomain_error(value) {
        errs.push(FieldError::invalid(path, quote(value), &why));
    }
}

fn push_ip(errs: &mut Vec<FieldError>, path: &str, value: &str) {
    if !is_valid_ip(value) {
        errs.push(FieldError::invalid(
            path,
            quote(value),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
}

/// An IntOrString port: a number in 1..=65535 or a port name. Required.
fn push_port_num_or_name(errs: &mut Vec<FieldError>, path: &str, value: &str) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if let Ok(n) = value.parse::<i64>() {
        push_range(errs, path, n, 1, 65535);
    } else if let Some(why) = port_name_error(value) {
        errs.push(FieldError::invalid(path, quote(value), why));
    }
}

/// An IntOrString that is a non-negative integer or a percentage up to 100%;
/// returns whether it is zero. Empty is allowed.
fn push_int_or_percent(errs: &mut Vec<FieldError>, path: &str, value: &str) -> Option<bool> {
    if value.is_empty() {
        return None;
    }
    let (digits, percent) = match value.strip_suffix('%') {
        Some(d) => (d, true),
        None => (value, false),
    };
    match digits.parse::<i64>() {
        Ok(n) if n < 0 => {
            errs.push(FieldError::invalid(
                path,
                quote(value),
                "must be greater than or equal to 0",
            ));
            None
        }
        Ok(n) if percent && n > 100 => {
            errs.push(FieldError::invalid(
                path,
                quote(value),
                "must not be greater than 100%",
            ));
            None
        }
        Ok(n) => Some(n == 0),
        Err(_) => {
            errs.push(FieldError::invalid(
                path,
                quote(value),
                "must be an integer or a percentage (e.g. '5%')",
            ));
            None
        }
    }
}

// ---------------------------------------------------------------- entry points

/// The Kubernetes kind name of an object's body.
fn kind_name(obj: &Object) -> &'static str {
    match &obj.kind {
        None => "Object",
        Some(Kind::Namespace(_)) => "Namespace",
        Some(Kind::Node(_)) => "Node",
        Some(Kind::Pod(_)) => "Pod",
        Some(Kind::Service(_)) => "Service",
        Some(Kind::Endpoints(_)) => "Endpoints",
        Some(Kind::ReplicationController(_)) => "ReplicationController",
        Some(Kind::ReplicaSet(_)) => "ReplicaSet",
        Some(Kind::DaemonSet(_)) => "DaemonSet",
        Some(Kind::Event(_)) => "Event",
        Some(Kind::Lease(_)) => "Lease",
    }
}

fn metadata(obj: &Object) -> Option<&ObjectMeta> {
    match obj.kind.as_ref()? {
        Kind::Namespace(o) => o.metadata.as_ref(),
        Kind::Node(o) => o.metadata.as_ref(),
        Kind::Pod(o) => o.metadata.as_ref(),
        Kind::Service(o) => o.metadata.as_ref(),
        Kind::Endpoints(o) => o.metadata.as_ref(),
        Kind::ReplicationController(o) => o.metadata.as_ref(),
        Kind::ReplicaSet(o) => o.metadata.as_ref(),
        Kind::DaemonSet(o) => o.metadata.as_ref(),
        Kind::Event(o) => o.metadata.as_ref(),
        Kind::Lease(o) => o.metadata.as_ref(),
    }
}

fn finish(obj: &Object, errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(ValidationErrors {
        kind: kind_name(obj).to_string(),
        name: metadata(obj).map(|m| m.name.clone()).unwrap_or_default(),
        errors,
    })
}

/// Checks an object as it would be created: metadata and the kind's own rules.
pub fn validate(obj: &Object) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    validate_into(obj, &mut errs);
    finish(obj, errs)
}

/// Checks an update: everything [`validate`] checks on `new`, plus the fields
/// that may not change from `old`.
pub fn validate_update(old: &Object, new: &Object) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    validate_into(new, &mut errs);
    if let (Some(o), Some(n)) = (&old.kind, &new.kind) {
        if kind_name(old) != kind_name(new) {
            errs.push(FieldError::invalid(
                "kind",
                quote(kind_name(new)),
                &format!(
                    "may not change the kind of an object (was {})",
                    quote(kind_name(old))
                ),
            ));
        } else {
            let default = ObjectMeta::default();
            validate_meta_update(
                metadata(old).unwrap_or(&default),
                metadata(new).unwrap_or(&default),
                &mut errs,
            );
            validate_body_update(o, n, &mut errs);
        }
    }
    finish(new, errs)
}

fn validate_into(obj: &Object, errs: &mut Vec<FieldError>) {
    let Some(kind) = &obj.kind else {
        errs.push(FieldError::required("kind", ""));
        return;
    };
    let name_rule = match kind {
        Kind::Namespace(_) | Kind::Service(_) => NameRule::Label,
        _ => NameRule::Subdomain,
    };
    let default = ObjectMeta::default();
    validate_object_meta(metadata(obj).unwrap_or(&default), name_rule, errs);
    match kind {
        Kind::Namespace(ns) => validate_namespace(ns, errs),
        Kind::Node(node) => validate_node(node, errs),
        Kind::Pod(pod) => match &pod.spec {
            None => errs.push(FieldError::required("spec", "")),
            Some(spec) => validate_pod_spec(spec, "spec", POD_RESTART_POLICIES, errs),
        },
        Kind::Service(svc) => validate_service(svc, errs),
        Kind::Endpoints(ep) => validate_endpoints(ep, errs),
        Kind::ReplicationController(rc) => validate_replication_controller(rc, errs),
        Kind::ReplicaSet(rs) => validate_replica_set(rs, errs),
        Kind::DaemonSet(ds) => validate_daemon_set(ds, errs),
        Kind::Event(ev) => validate_event(ev, errs),
        Kind::Lease(lease) => validate_lease(lease, errs),
    }
}

// ---------------------------------------------------------------- metadata

#[derive(Clone, Copy)]
enum NameRule {
    Label,
    Subdomain,
}

impl NameRule {
    fn error(self, name: &str) -> Option<String> {
        match self {
            NameRule::Label => dns1123_label_error(name),
            NameRule::Subdomain => dns1123_subdomain_error(name),
        }
    }
}

fn validate_object_meta(meta: &ObjectMeta, rule: NameRule, errs: &mut Vec<FieldError>) {
    if !meta.generate_name.is_empty() {
        // The prefix gets random characters appended, so a trailing '-' is fine.
        let mut prefix = meta.generate_name.clone();
        if prefix.len() > 1 && prefix.ends_with('-') {
            prefix.pop();
            prefix.push('a');
        }
        if let Some(why) = rule.error(&prefix) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                quote(&meta.generate_name),
                &why,
            ));
        }
    }
    if meta.name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Some(why) = rule.error(&meta.name) {
        errs.push(FieldError::invalid(
            "metadata.name",
            quote(&meta.name),
            &why,
        ));
    }
    if !meta.namespace.is_empty() {
        push_label_name(errs, "metadata.namespace", &meta.namespace);
    }
    push_non_negative(errs, "metadata.generation", meta.generation);
    validate_labels(&meta.labels, "metadata.labels", errs);
    validate_annotations(&meta.annotations, "metadata.annotations", errs);
    for (i, f) in meta.finalizers.iter().enumerate() {
        if let Err(why) = validate_label_key(f) {
            errs.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                quote(f),
                &why,
            ));
        }
    }
    let mut controllers = 0;
    for (i, r) in meta.owner_references.iter().enumerate() {
        let p = format!("metadata.ownerReferences[{i}]");
        for (field, value) in [
            ("apiVersion", &r.api_version),
            ("kind", &r.kind),
            ("name", &r.name),
            ("uid", &r.uid),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(format!("{p}.{field}"), ""));
            }
        }
        if r.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            controllers,
            "Only one reference can have Controller set to true",
        ));
    }
}

fn validate_meta_update(old: &ObjectMeta, new: &ObjectMeta, errs: &mut Vec<FieldError>) {
    if old.name != new.name {
        errs.push(FieldError::invalid(
            "metadata.name",
            quote(&new.name),
            "field is immutable",
        ));
    }
    if old.namespace != new.namespace {
        errs.push(FieldError::invalid(
            "metadata.namespace",
            quote(&new.namespace),
            "field is immutable",
        ));
    }
    if !new.uid.is_empty() && new.uid != old.uid {
        errs.push(FieldError::invalid(
            "metadata.uid",
            quote(&new.uid),
            "field is immutable",
        ));
    }
}

fn template_labels(t: &proto::PodTemplateSpec) -> HashMap<String, String> {
    t.metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- pods

const POD_RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const TEMPLATE_RESTART_POLICIES: &[&str] = &["Always"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const HOST_PATH_TYPES: &[&str] = &[
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// Checks a pod spec found at `path` (`spec` for a Pod, `spec.template.spec`
/// in a template); `restart_policies` are the accepted restart policies.
fn validate_pod_spec(
    spec: &proto::PodSpec,
    path: &str,
    restart_policies: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let volumes = validate_volumes(&spec.volumes, path, errs);

    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    let mut host_ports = HashSet::new();
    for (list, field, init) in [
        (&spec.containers, "containers", false),
        (&spec.init_containers, "initContainers", true),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = format!("{path}.{field}[{i}]");
            validate_container(c, &p, init, &volumes, &mut names, errs);
            for (j, port) in c.ports.iter().enumerate() {
                if port.host_port != 0 {
                    let proto = if port.protocol.is_empty() {
                        "TCP"
                    } else {
                        &port.protocol
                    };
                    let key = format!("{}/{}", port.host_port, proto);
                    if !host_ports.insert(key.clone()) {
                        errs.push(FieldError::duplicate(
                            format!("{p}.ports[{j}].hostPort"),
                            quote(&key),
                        ));
                    }
                }
            }
        }
    }

    push_supported(
        errs,
        &format!("{path}.restartPolicy"),
        &spec.restart_policy,
        restart_policies,
    );
    push_supported(
        errs,
        &format!("{path}.dnsPolicy"),
        &spec.dns_policy,
        DNS_POLICIES,
    );
    if spec.dns_policy == "None" {
        match &spec.dns_config {
            None => errs.push(FieldError::required(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(c) if c.nameservers.is_empty() => errs.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )),
            Some(_) => {}
        }
    }
    if let Some(c) = &spec.dns_config {
        validate_dns_config(c, &format!("{path}.dnsConfig"), errs);
    }

    for (i, t) in spec.tolerations.iter().enumerate() {
        validate_toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
    validate_labels(&spec.node_selector, &format!("{path}.nodeSelector"), errs);
    if let Some(na) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        validate_node_affinity(na, &format!("{path}.affinity.nodeAffinity"), errs);
    }

    if !spec.node_name.is_empty() {
        push_subdomain(errs, &format!("{path}.nodeName"), &spec.node_name);
    }
    if !spec.hostname.is_empty() {
        push_label_name(errs, &format!("{path}.hostname"), &spec.hostname);
    }
    if !spec.subdomain.is_empty() {
        push_label_name(errs, &format!("{path}.subdomain"), &spec.subdomain);
    }
    if !spec.service_account_name.is_empty() {
        push_subdomain(
            errs,
            &format!("{path}.serviceAccountName"),
            &spec.service_account_name,
        );
    }
}

/// Checks volumes and returns their (valid) names.
fn validate_volumes(
    volumes: &[proto::Volume],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("{path}.volumes[{i}]");
        if v.name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if let Some(why) = dns1123_label_error(&v.name) {
            errs.push(FieldError::invalid(
                format!("{p}.name"),
                quote(&v.name),
                &why,
            ));
        } else if !names.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(format!("{p}.name"), quote(&v.name)));
        }
        if v.empty_dir.is_some() && v.host_path.is_some() {
            errs.push(FieldError::forbidden(
                format!("{p}.hostPath"),
                "may not specify more than 1 volume type",
            ));
        }
        if let Some(hp) = &v.host_path {
            if hp.path.is_empty() {
                errs.push(FieldError::required(format!("{p}.hostPath.path"), ""));
            }
            push_supported(
                errs,
                &format!("{p}.hostPath.type"),
                &hp.r#type,
                HOST_PATH_TYPES,
            );
        }
        if let Some(ed) = &v.empty_dir {
            push_supported(
                errs,
                &format!("{p}.emptyDir.medium"),
                &ed.medium,
                &["Memory"],
            );
            if !ed.size_limit.is_empty() && !is_valid_quantity(&ed.size_limit) {
                errs.push(FieldError::invalid(
                    format!("{p}.emptyDir.sizeLimit"),
                    quote(&ed.size_limit),
                    "must be a valid resource quantity",
                ));
            }
        }
    }
    names
}

fn validate_container(
    c: &proto::Container,
    p: &str,
    init: bool,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    if c.name.is_empty() {
        errs.push(FieldError::required(format!("{p}.name"), ""));
    } else if let Some(why) = dns1123_label_error(&c.name) {
        errs.push(FieldError::invalid(
            format!("{p}.name"),
            quote(&c.name),
            &why,
        ));
    } else if !names.insert(c.name.clone()) {
        errs.push(FieldError::duplicate(format!("{p}.name"), quote(&c.name)));
    }

    if c.image.is_empty() {
        errs.push(FieldError::required(format!("{p}.image"), ""));
    } else if c.image.trim() != c.image {
        errs.push(FieldError::invalid(
            format!("{p}.image"),
            quote(&c.image),
            "must not have leading or trailing whitespace",
        ));
    }
    push_supported(
        errs,
        &format!("{p}.imagePullPolicy"),
        &c.image_pull_policy,
        PULL_POLICIES,
    );

    let mut port_names = HashSet::new();
    for (j, port) in c.ports.iter().enumerate() {
        let pp = format!("{p}.ports[{j}]");
        if port.container_port == 0 {
            errs.push(FieldError::required(format!("{pp}.containerPort"), ""));
        } else {
            push_range(
                errs,
                &format!("{pp}.containerPort"),
                port.container_port.into(),
                1,
                65535,
            );
        }
        push_range(
            errs,
            &format!("{pp}.hostPort"),
            port.host_port.into(),
            0,
            65535,
        );
        push_supported(errs, &format!("{pp}.protocol"), &port.protocol, PROTOCOLS);
        if !port.name.is_empty() {
            if let Some(why) = port_name_error(&port.name) {
                errs.push(FieldError::invalid(
                    format!("{pp}.name"),
                    quote(&port.name),
                    why,
                ));
            } else if !port_names.insert(port.name.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{pp}.name"),
                    quote(&port.name),
                ));
            }
        }
        if !port.host_ip.is_empty() {
            push_ip(errs, &format!("{pp}.hostIP"), &port.host_ip);
        }
    }

    for (j, e) in c.env.iter().enumerate() {
        let ep = format!("{p}.env[{j}].name");
        if e.name.is_empty() {
            errs.push(FieldError::required(ep, ""));
        } else if e.name.contains('=') || !e.name.chars().all(|ch| ch.is_ascii_graphic()) {
            errs.push(FieldError::invalid(
                ep,
                quote(&e.name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }

    if let Some(r) = &c.resources {
        for (field, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            let sorted: BTreeMap<&String, &String> = map.iter().collect();
            for (name, q) in sorted {
                let rp = format!("{p}.resources.{field}[{name}]");
                if let Err(why) = validate_label_key(name) {
                    errs.push(FieldError::invalid(&rp, quote(name), &why));
                }
                if !is_valid_quantity(q) {
                    errs.push(FieldError::invalid(
                        &rp,
                        quote(q),
                        "quantities must match the regular expression \
                         '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ));
                } else if is_negative_quantity(q) {
                    errs.push(FieldError::invalid(
                        &rp,
                        quote(q),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
    }

    let mut mount_paths = HashSet::new();
    for (j, m) in c.volume_mounts.iter().enumerate() {
        let mp = format!("{p}.volumeMounts[{j}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(format!("{mp}.name"), quote(&m.name)));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.clone()) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                quote(&m.mount_path),
                "must be unique",
            ));
        }
    }

    for (field, probe, success_must_be_one) in [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ] {
        let Some(probe) = probe else { continue };
        let pp = format!("{p}.{field}");
        if init {
            errs.push(FieldError::forbidden(
                pp,
                "may not be set for init containers",
            ));
        } else {
            validate_probe(probe, &pp, success_must_be_one, errs);
        }
    }
}

fn validate_probe(
    probe: &proto::Probe,
    p: &str,
    success_must_be_one: bool,
    errs: &mut Vec<FieldError>,
) {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
    ]
    .iter()
    .filter(|h| **h)
    .count();
    match handlers {
        0 => errs.push(FieldError::required(p, "must specify a handler type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            p,
            "may not specify more than 1 handler type",
        )),
    }
    if let Some(exec) = &probe.exec {
        if exec.command.is_empty() {
            errs.push(FieldError::required(format!("{p}.exec.command"), ""));
        }
    }
    if let Some(h) = &probe.http_get {
        push_port_num_or_name(errs, &format!("{p}.httpGet.port"), &h.port);
        push_supported(
            errs,
            &format!("{p}.httpGet.scheme"),
            &h.scheme,
            &["HTTP", "HTTPS"],
        );
        if !h.path.is_empty() && !h.path.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{p}.httpGet.path"),
                quote(&h.path),
                "must be an absolute path starting with '/'",
            ));
        }
    }
    if let Some(t) = &probe.tcp_socket {
        push_port_num_or_name(errs, &format!("{p}.tcpSocket.port"), &t.port);
    }
    for (field, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        push_non_negative(errs, &format!("{p}.{field}"), v.into());
    }
    if success_must_be_one && probe.success_threshold > 1 {
        errs.push(FieldError::invalid(
            format!("{p}.successThreshold"),
            probe.success_threshold,
            "must be 1",
        ));
    }
}

fn validate_dns_config(c: &proto::PodDnsConfig, p: &str, errs: &mut Vec<FieldError>) {
    if c.nameservers.len() > 3 {
        errs.push(FieldError::invalid(
            format!("{p}.nameservers"),
            quote(&c.nameservers.join(",")),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in c.nameservers.iter().enumerate() {
        push_ip(errs, &format!("{p}.nameservers[{i}]"), ns);
    }
    if c.searches.len() > 32 {
        errs.push(FieldError::invalid(
            format!("{p}.searches"),
            quote(&c.searches.join(",")),
            "must not have more than 32 search paths",
        ));
    }
    for (i, s) in c.searches.iter().enumerate() {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if let Some(why) = dns1123_subdomain_error(trimmed) {
            errs.push(FieldError::invalid(
                format!("{p}.searches[{i}]"),
                quote(s),
                &why,
            ));
        }
    }
    for (i, o) in c.options.iter().enumerate() {
        if o.name.is_empty() {
            errs.push(FieldError::required(format!("{p}.options[{i}].name"), ""));
        }
    }
}

fn validate_toleration(t: &proto::Toleration, p: &str, errs: &mut Vec<FieldError>) {
    if !t.key.is_empty() {
        if let Err(why) = validate_label_key(&t.key) {
            errs.push(FieldError::invalid(format!("{p}.key"), quote(&t.key), &why));
        }
    }
    match t.operator.as_str() {
        "" | "Equal" => {
            if t.key.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.operator"),
                    quote(&t.operator),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            if let Err(why) = validate_label_value(&t.value) {
                errs.push(FieldError::invalid(
                    format!("{p}.value"),
                    quote(&t.value),
                    &why,
                ));
            }
        }
        "Exists" => {
            if !t.value.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.value"),
                    quote(&t.value),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{p}.operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    push_supported(errs, &format!("{p}.effect"), &t.effect, TAINT_EFFECTS);
    if t.toleration_seconds.is_some() && t.effect != "NoExecute" {
        errs.push(FieldError::invalid(
            format!("{p}.effect"),
            quote(&t.effect),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

fn validate_node_affinity(na: &proto::NodeAffinity, p: &str, errs: &mut Vec<FieldError>) {
    if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
        let rp = format!("{p}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if req.node_selector_terms.is_empty() {
            errs.push(FieldError::required(
                &rp,
                "must have at least one node selector term",
            ));
        }
        for (i, term) in req.node_selector_terms.iter().enumerate() {
            validate_node_selector_term(term, &format!("{rp}[{i}]"), errs);
        }
    }
    for (i, pref) in na
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        let pp = format!("{p}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        if !(1..=100).contains(&pref.weight) {
            errs.push(FieldError::invalid(
                format!("{pp}.weight"),
                pref.weight,
                "must be in the range 1-100",
            ));
        }
        if let Some(term) = &pref.preference {
            validate_node_selector_term(term, &format!("{pp}.preference"), errs);
        }
    }
}

fn validate_node_selector_term(
    term: &proto::NodeSelectorTerm,
    p: &str,
    errs: &mut Vec<FieldError>,
) {
    for (j, r) in term.match_expressions.iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{j}]");
        if let Err(why) = validate_label_key(&r.key) {
            errs.push(FieldError::invalid(
                format!("{rp}.key"),
                quote(&r.key),
                &why,
            ));
        }
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if r.values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{rp}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
                for (k, v) in r.values.iter().enumerate() {
                    if let Err(why) = validate_label_value(v) {
                        errs.push(FieldError::invalid(
                            format!("{rp}.values[{k}]"),
                            quote(v),
                            &why,
                        ));
                    }
                }
            }
            "Exists" | "DoesNotExist" => {
                if !r.values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{rp}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            "Gt" | "Lt" => {
                if r.values.len() != 1 {
                    errs.push(FieldError::required(
                        format!("{rp}.values"),
                        "must be specified single value when `operator` is 'Lt' or 'Gt'",
                    ));
                } else if r.values[0].parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        format!("{rp}.values[0]"),
                        quote(&r.values[0]),
                        "must be an integer when `operator` is 'Lt' or 'Gt'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{rp}.operator"),
                other,
                &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"],
            )),
        }
    }
    for (j, r) in term.match_fields.iter().enumerate() {
        let rp = format!("{p}.matchFields[{j}]");
        if r.key != "metadata.name" {
            errs.push(FieldError::not_supported(
                format!("{rp}.key"),
                &r.key,
                &["metadata.name"],
            ));
        }
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if r.values.len() != 1 {
                    errs.push(FieldError::required(
                        format!("{rp}.values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{rp}.operator"),
                other,
                &["In", "NotIn"],
            )),
        }
    }
}

// ---------------------------------------------------------------- workloads

/// Template metadata (labels, annotations) and its pod spec.
fn validate_pod_template(t: &proto::PodTemplateSpec, errs: &mut Vec<FieldError>) {
    if let Some(m) = &t.metadata {
        validate_labels(&m.labels, "spec.template.metadata.labels", errs);
        validate_annotations(&m.annotations, "spec.template.metadata.annotations", errs);
    }
    match &t.spec {
        None => errs.push(FieldError::required("spec.template.spec", "")),
        Some(spec) => {
            validate_pod_spec(spec, "spec.template.spec", TEMPLATE_RESTART_POLICIES, errs)
        }
    }
}

/// Template required, with labels that `selector` (if known) matches.
fn validate_template_against(
    template: Option<&proto::PodTemplateSpec>,
    selector: Option<&LabelSelector>,
    errs: &mut Vec<FieldError>,
) {
    let Some(t) = template else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = template_labels(t);
    if labels.is_empty() {
        errs.push(FieldError::required("spec.template.metadata.labels", ""));
    } else if let Some(sel) = selector {
        if !sel.is_empty() && !sel.matches(&labels) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                json_map(&labels),
                "selector does not match template labels",
            ));
        }
    }
    validate_pod_template(t, errs);
}

fn push_replicas(errs: &mut Vec<FieldError>, replicas: Option<i32>, min_ready_seconds: i32) {
    if let Some(r) = replicas {
        push_non_negative(errs, "spec.replicas", r.into());
    }
    push_non_negative(errs, "spec.minReadySeconds", min_ready_seconds.into());
}

fn validate_replication_controller(rc: &proto::ReplicationController, errs: &mut Vec<FieldError>) {
    let Some(spec) = &rc.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    push_replicas(errs, spec.replicas, spec.min_ready_seconds);
    let selector = if spec.selector.is_empty() {
        errs.push(FieldError::required("spec.selector", ""));
        None
    } else {
        let before = errs.len();
        validate_labels(&spec.selector, "spec.selector", errs);
        // An invalid selector is reported once, not again as a mismatch.
        (errs.len() == before).then(|| LabelSelector::from_map(&spec.selector))
    };
    validate_template_against(spec.template.as_ref(), selector.as_ref(), errs);
}

/// A workload's structured selector: required, valid and non-empty.
fn validate_workload_selector(
    selector: Option<&proto::LabelSelector>,
    kind: &str,
    errs: &mut Vec<FieldError>,
) -> Option<LabelSelector> {
    let Some(raw) = selector else {
        errs.push(FieldError::required("spec.selector", ""));
        return None;
    };
    match LabelSelector::from_proto(raw) {
        Err(e) => {
            errs.push(FieldError::invalid(
                "spec.selector",
                json_selector(raw),
                e.reason(),
            ));
            None
        }
        Ok(sel) if sel.is_empty() => {
            errs.push(FieldError::invalid(
                "spec.selector",
                json_selector(raw),
                &format!("empty selector is invalid for a {kind}"),
            ));
            None
        }
        Ok(sel) => Some(sel),
    }
}

fn validate_replica_set(rs: &proto::ReplicaSet, errs: &mut Vec<FieldError>) {
    let Some(spec) = &rs.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    push_replicas(errs, spec.replicas, spec.min_ready_seconds);
    let selector = validate_workload_selector(spec.selector.as_ref(), "ReplicaSet", errs);
    validate_template_against(spec.template.as_ref(), selector.as_ref(), errs);
}

fn validate_daemon_set(ds: &proto::DaemonSet, errs: &mut Vec<FieldError>) {
    let Some(spec) = &ds.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    let selector = validate_workload_selector(spec.selector.as_ref(), "DaemonSet", errs);
    validate_template_against(spec.template.as_ref(), selector.as_ref(), errs);
    push_non_negative(errs, "spec.minReadySeconds", spec.min_ready_seconds.into());
    if let Some(limit) = spec.revision_history_limit {
        push_non_negative(errs, "spec.revisionHistoryLimit", limit.into());
    }
    if let Some(strategy) = &spec.update_strategy {
        push_supported(
            errs,
            "spec.updateStrategy.type",
            &strategy.r#type,
            &["RollingUpdate", "OnDelete"],
        );
        if let Some(ru) = &strategy.rolling_update {
            let p = "spec.updateStrategy.rollingUpdate";
            let unavailable_zero =
                push_int_or_percent(errs, &format!("{p}.maxUnavailable"), &ru.max_unavailable);
            let surge_zero = push_int_or_percent(errs, &format!("{p}.maxSurge"), &ru.max_surge);
            if unavailable_zero == Some(true) && surge_zero == Some(true) {
                errs.push(FieldError::invalid(
                    format!("{p}.maxUnavailable"),
                    quote(&ru.max_unavailable),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
    }
}

// ---------------------------------------------------------------- services, endpoints

const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

fn validate_service(svc: &proto::Service, errs: &mut Vec<FieldError>) {
    let Some(spec) = &svc.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    push_supported(errs, "spec.type", &spec.r#type, SERVICE_TYPES);
    let ty = if spec.r#type.is_empty() {
        "ClusterIP"
    } else {
        spec.r#type.as_str()
    };
    let headless = spec.cluster_ip == "None";
    let node_ports_allowed = ty == "NodePort" || ty == "LoadBalancer";

    if ty == "ExternalName" {
        if spec.external_name.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            let name = spec
                .external_name
                .strip_suffix('.')
                .unwrap_or(&spec.external_name);
            if let Some(why) = dns1123_subdomain_error(name) {
                errs.push(FieldError::invalid(
                    "spec.externalName",
                    quote(&spec.external_name),
                    &why,
                ));
            }
        }
        if !spec.cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
    } else if spec.ports.is_empty() && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }

    let mut names = HashSet::new();
    let mut node_ports = HashSet::new();
    let mut port_protocols = HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        if port.name.is_empty() {
            if spec.ports.len() > 1 {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            }
        } else if let Some(why) = dns1123_label_error(&port.name) {
            errs.push(FieldError::invalid(
                format!("{p}.name"),
                quote(&port.name),
                &why,
            ));
        } else if !names.insert(port.name.clone()) {
            errs.push(FieldError::duplicate(
                format!("{p}.name"),
                quote(&port.name),
            ));
        }
        push_supported(errs, &format!("{p}.protocol"), &port.protocol, PROTOCOLS);
        push_range(errs, &format!("{p}.port"), port.port.into(), 1, 65535);
        let proto = if port.protocol.is_empty() {
            "TCP"
        } else {
            &port.protocol
        };
        if !port_protocols.insert((port.port, proto.to_string())) {
            errs.push(FieldError::duplicate(
                &p,
                quote(&format!("{}/{}", port.port, proto)),
            ));
        }
        if !port.target_port.is_empty() {
            push_port_num_or_name(errs, &format!("{p}.targetPort"), &port.target_port);
        }
        if port.node_port != 0 {
            let np = format!("{p}.nodePort");
            if !node_ports_allowed {
                errs.push(FieldError::forbidden(
                    np,
                    &format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !(30000..=32767).contains(&port.node_port) {
                errs.push(FieldError::invalid(
                    np,
                    port.node_port,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            } else if !node_ports.insert((port.node_port, proto.to_string())) {
                errs.push(FieldError::duplicate(np, port.node_port));
            }
        }
    }

    if !spec.cluster_ip.is_empty() && !headless && !is_valid_ip(&spec.cluster_ip) {
        errs.push(FieldError::invalid(
            "spec.clusterIP",
            quote(&spec.cluster_ip),
            "must be empty, 'None', or a valid IP address",
        ));
    }
    if headless && node_ports_allowed {
        errs.push(FieldError::invalid(
            "spec.clusterIP",
            quote("None"),
            &format!("may not be set to 'None' for {ty} services"),
        ));
    }
    for (i, ip) in spec.cluster_ips.iter().enumerate() {
        let p = format!("spec.clusterIPs[{i}]");
        if ip != "None" && !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                &p,
                quote(ip),
                "must be empty, 'None', or a valid IP address",
            ));
        } else if i == 0 && !spec.cluster_ip.is_empty() && *ip != spec.cluster_ip {
            errs.push(FieldError::invalid(
                &p,
                quote(ip),
                "must match `clusterIP` when set",
            ));
        }
    }
    for (i, ip) in spec.external_ips.iter().enumerate() {
        push_ip(errs, &format!("spec.externalIPs[{i}]"), ip);
    }
    if !spec.load_balancer_ip.is_empty() {
        push_ip(errs, "spec.loadBalancerIP", &spec.load_balancer_ip);
    }

    push_supported(
        errs,
        "spec.sessionAffinity",
        &spec.session_affinity,
        &["None", "ClientIP"],
    );
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    let tp = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
    match (spec.session_affinity.as_str(), timeout) {
        ("ClientIP", Some(t)) if !(1..=86400).contains(&t) => errs.push(FieldError::invalid(
            tp,
            t,
            "must be greater than 0 and less than or equal to 86400",
        )),
        ("" | "None", Some(_)) => errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when `sessionAffinity` is None",
        )),
        _ => {}
    }

    push_supported(
        errs,
        "spec.externalTrafficPolicy",
        &spec.external_traffic_policy,
        &["Cluster", "Local"],
    );
    if !spec.external_traffic_policy.is_empty() && !node_ports_allowed {
        errs.push(FieldError::invalid(
            "spec.externalTrafficPolicy",
            quote(&spec.external_traffic_policy),
            "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
        ));
    }
    validate_labels(&spec.selector, "spec.selector", errs);
}

fn validate_endpoints(ep: &proto::Endpoints, errs: &mut Vec<FieldError>) {
    for (i, subset) in ep.subsets.iter().enumerate() {
        let p = format!("subsets[{i}]");
        for (field, addresses) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in addresses.iter().enumerate() {
                let ap = format!("{p}.{field}[{j}]");
                push_ip(errs, &format!("{ap}.ip"), &a.ip);
                if !a.hostname.is_empty() {
                    push_label_name(errs, &format!("{ap}.hostname"), &a.hostname);
                }
                if let Some(node) = a.node_name.as_deref().filter(|n| !n.is_empty()) {
                    push_subdomain(errs, &format!("{ap}.nodeName"), node);
                }
            }
        }
        let mut names = HashSet::new();
        for (j, port) in subset.ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            if port.name.is_empty() {
                if subset.ports.len() > 1 {
                    errs.push(FieldError::required(format!("{pp}.name"), ""));
                }
            } else if let Some(why) = dns1123_label_error(&port.name) {
                errs.push(FieldError::invalid(
                    format!("{pp}.name"),
                    quote(&port.name),
                    &why,
                ));
            } else if !names.insert(port.name.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{pp}.name"),
                    quote(&port.name),
                ));
            }
            push_range(errs, &format!("{pp}.port"), port.port.into(), 1, 65535);
            push_supported(errs, &format!("{pp}.protocol"), &port.protocol, PROTOCOLS);
        }
    }
}

// ---------------------------------------------------------------- cluster objects, events, leases

fn validate_node(node: &proto::Node, errs: &mut Vec<FieldError>) {
    if let Some(spec) = &node.spec {
        let mut seen = HashSet::new();
        for (i, t) in spec.taints.iter().enumerate() {
            let p = format!("spec.taints[{i}]");
            if t.key.is_empty() {
                errs.push(FieldError::required(format!("{p}.key"), ""));
            } else if let Err(why) = validate_label_key(&t.key) {
                errs.push(FieldError::invalid(format!("{p}.key"), quote(&t.key), &why));
            }
            if let Err(why) = validate_label_value(&t.value) {
                errs.push(FieldError::invalid(
                    format!("{p}.value"),
                    quote(&t.value),
                    &why,
                ));
            }
            if t.effect.is_empty() {
                errs.push(FieldError::required(format!("{p}.effect"), ""));
            } else {
                push_supported(errs, &format!("{p}.effect"), &t.effect, TAINT_EFFECTS);
            }
            if !seen.insert((t.key.clone(), t.effect.clone())) {
                errs.push(FieldError::duplicate(
                    &p,
                    format!("{{key: {}, effect: {}}}", quote(&t.key), quote(&t.effect)),
                ));
            }
        }
        if !spec.pod_cidr.is_empty() && !is_valid_cidr(&spec.pod_cidr) {
            errs.push(FieldError::invalid(
                "spec.podCIDR",
                quote(&spec.pod_cidr),
                "must be a valid CIDR",
            ));
        }
        for (i, c) in spec.pod_cidrs.iter().enumerate() {
            if !is_valid_cidr(c) {
                errs.push(FieldError::invalid(
                    format!("spec.podCIDRs[{i}]"),
                    quote(c),
                    "must be a valid CIDR",
                ));
            }
        }
    }
    if let Some(status) = &node.status {
        for (field, map) in [
            ("capacity", &status.capacity),
            ("allocatable", &status.allocatable),
        ] {
            let sorted: BTreeMap<&String, &String> = map.iter().collect();
            for (name, q) in sorted {
                if !is_valid_quantity(q) {
                    errs.push(FieldError::invalid(
                        format!("status.{field}[{name}]"),
                        quote(q),
                        "must be a valid resource quantity",
                    ));
                }
            }
        }
    }
}

fn validate_namespace(ns: &proto::Namespace, errs: &mut Vec<FieldError>) {
    if let Some(spec) = &ns.spec {
        for (i, f) in spec.finalizers.iter().enumerate() {
            if let Err(why) = validate_label_key(f) {
                errs.push(FieldError::invalid(
                    format!("spec.finalizers[{i}]"),
                    quote(f),
                    &why,
                ));
            }
        }
    }
    if let Some(status) = &ns.status {
        push_supported(
            errs,
            "status.phase",
            &status.phase,
            &["Active", "Terminating"],
        );
    }
}

fn validate_event(ev: &proto::Event, errs: &mut Vec<FieldError>) {
    let name = ev
        .involved_object
        .as_ref()
        .map(|o| o.name.as_str())
        .unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required("involvedObject.name", ""));
    }
    push_supported(errs, "type", &ev.r#type, &["Normal", "Warning"]);
    push_non_negative(errs, "count", ev.count.into());
}

fn validate_lease(lease: &proto::Lease, errs: &mut Vec<FieldError>) {
    let Some(spec) = &lease.spec else { return };
    if let Some(d) = spec.lease_duration_seconds {
        if d <= 0 {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = spec.lease_transitions {
        push_non_negative(errs, "spec.leaseTransitions", t.into());
    }
}

// ---------------------------------------------------------------- updates

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than \
     spec.containers[*].image, spec.tolerations (only additions)";

fn validate_body_update(old: &Kind, new: &Kind, errs: &mut Vec<FieldError>) {
    match (old, new) {
        (Kind::Pod(o), Kind::Pod(n)) => {
            if let (Some(os), Some(ns)) = (&o.spec, &n.spec) {
                if !pod_spec_update_allowed(os, ns) {
                    errs.push(FieldError::forbidden("spec", POD_UPDATE_MSG));
                }
            }
        }
        (Kind::ReplicaSet(o), Kind::ReplicaSet(n)) => {
            let os = o.spec.as_ref().and_then(|s| s.selector.as_ref());
            let ns = n.spec.as_ref().and_then(|s| s.selector.as_ref());
            push_selector_immutable(os, ns, errs);
        }
        (Kind::DaemonSet(o), Kind::DaemonSet(n)) => {
            let os = o.spec.as_ref().and_then(|s| s.selector.as_ref());
            let ns = n.spec.as_ref().and_then(|s| s.selector.as_ref());
            push_selector_immutable(os, ns, errs);
        }
        (Kind::Node(o), Kind::Node(n)) => {
            // As Kubernetes: once set, the podCIDR(s) never change (the
            // node's pods and routes are built on it); from "" it may be set.
            let cidrs = |s: Option<&proto::NodeSpec>| {
                s.map(|s| {
                    if s.pod_cidrs.is_empty() && !s.pod_cidr.is_empty() {
                        vec![s.pod_cidr.clone()]
                    } else {
                        s.pod_cidrs.clone()
                    }
                })
                .unwrap_or_default()
            };
            let (old_cidrs, new_cidrs) = (cidrs(o.spec.as_ref()), cidrs(n.spec.as_ref()));
            let old_cidr = o.spec.as_ref().map(|s| s.pod_cidr.as_str()).unwrap_or("");
            let new_cidr = n.spec.as_ref().map(|s| s.pod_cidr.as_str()).unwrap_or("");
            if (!old_cidr.is_empty() && old_cidr != new_cidr)
                || (!old_cidrs.is_empty() && old_cidrs != new_cidrs)
            {
                errs.push(FieldError::forbidden(
                    "spec.podCIDR",
                    "node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
        (Kind::Service(o), Kind::Service(n)) => {
            let old_ip = o.spec.as_ref().map(|s| s.cluster_ip.as_str()).unwrap_or("");
            let new_ip = n.spec.as_ref().map(|s| s.cluster_ip.as_str()).unwrap_or("");
            if !old_ip.is_empty() && old_ip != new_ip {
                errs.push(FieldError::invalid(
                    "spec.clusterIP",
                    quote(new_ip),
                    "field is immutable",
                ));
            }
        }
        _ => {}
    }
}

/// Whether `new` differs from `old` only in container images, added
/// tolerations, and a first assignment of `nodeName`.
fn pod_spec_update_allowed(old: &proto::PodSpec, new: &proto::PodSpec) -> bool {
    let mut allowed = old.clone();
    for (list, new_list) in [
        (&mut allowed.containers, &new.containers),
        (&mut allowed.init_containers, &new.init_containers),
    ] {
        if list.len() == new_list.len() {
            for (a, b) in list.iter_mut().zip(new_list) {
                a.image.clone_from(&b.image);
            }
        }
    }
    if old.tolerations.iter().all(|t| new.tolerations.contains(t)) {
        allowed.tolerations.clone_from(&new.tolerations);
    }
    if old.node_name.is_empty() {
        allowed.node_name.clone_from(&new.node_name);
    }
    allowed == *new
}

fn push_selector_immutable(
    old: Option<&proto::LabelSelector>,
    new: Option<&proto::LabelSelector>,
    errs: &mut Vec<FieldError>,
) {
    let same = match (old, new) {
        (None, None) => true,
        (Some(a), Some(b)) => match (LabelSelector::from_proto(a), LabelSelector::from_proto(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        _ => false,
    };
    if !same {
        let shown = new.map(json_selector).unwrap_or_else(|| "null".to_string());
        errs.push(FieldError::invalid(
            "spec.selector",
            shown,
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::LabelSelector;
    use crate::proto::*;

    // ------------------------------------------------------------ builders

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        })
    }

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    fn pod_spec() -> PodSpec {
        PodSpec {
            containers: vec![container("nginx", "nginx:1.25")],
            ..Default::default()
        }
    }

    fn pod_with(f: impl FnOnce(&mut Pod)) -> Object {
        let mut pod = Pod {
            metadata: meta("web"),
            spec: Some(pod_spec()),
            ..Default::default()
        };
        f(&mut pod);
        Object {
            kind: Some(Kind::Pod(pod)),
        }
    }

    fn spec_with(f: impl FnOnce(&mut PodSpec)) -> Object {
        pod_with(|p| {
            if let Some(s) = p.spec.as_mut() {
                f(s);
            }
        })
    }

    fn container_with(f: impl FnOnce(&mut Container)) -> Object {
        spec_with(|s| f(&mut s.containers[0]))
    }

    fn template(labels: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: map(labels),
                ..Default::default()
            }),
            spec: Some(pod_spec()),
        }
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn rs_with(f: impl FnOnce(&mut ReplicaSetSpec)) -> Object {
        let mut spec = ReplicaSetSpec {
            replicas: Some(3),
            selector: Some(LabelSelector {
                match_labels: map(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(template(&[("app", "web")])),
            ..Default::default()
        };
        f(&mut spec);
        Object {
            kind: Some(Kind::ReplicaSet(ReplicaSet {
                metadata: meta("web-rs"),
                spec: Some(spec),
                ..Default::default()
            })),
        }
    }

    fn ds_with(f: impl FnOnce(&mut DaemonSetSpec)) -> Object {
        let mut spec = DaemonSetSpec {
            selector: Some(LabelSelector {
                match_labels: map(&[("app", "agent")]),
                match_expressions: vec![],
            }),
            template: Some(template(&[("app", "agent")])),
            ..Default::default()
        };
        f(&mut spec);
        Object {
            kind: Some(Kind::DaemonSet(DaemonSet {
                metadata: meta("agent"),
                spec: Some(spec),
                ..Default::default()
            })),
        }
    }

    fn rc_with(f: impl FnOnce(&mut ReplicationControllerSpec)) -> Object {
        let mut spec = ReplicationControllerSpec {
            replicas: Some(2),
            selector: map(&[("app", "web")]),
            template: Some(template(&[("app", "web"), ("tier", "fe")])),
            ..Default::default()
        };
        f(&mut spec);
        Object {
            kind: Some(Kind::ReplicationController(ReplicationController {
                metadata: meta("web-rc"),
                spec: Some(spec),
                ..Default::default()
            })),
        }
    }

    fn svc_with(f: impl FnOnce(&mut ServiceSpec)) -> Object {
        let mut spec = ServiceSpec {
            ports: vec![ServicePort {
                port: 80,
                target_port: "8080".into(),
                ..Default::default()
            }],
            selector: map(&[("app", "web")]),
            ..Default::default()
        };
        f(&mut spec);
        Object {
            kind: Some(Kind::Service(Service {
                metadata: meta("web"),
                spec: Some(spec),
                ..Default::default()
            })),
        }
    }

    fn port(name: &str, port: i32) -> ServicePort {
        ServicePort {
            name: name.into(),
            port,
            ..Default::default()
        }
    }

    // ------------------------------------------------------------ assertions

    fn errors(obj: &Object) -> Vec<FieldError> {
        validate(obj).err().map(|e| e.errors).unwrap_or_default()
    }

    #[track_caller]
    fn assert_valid(obj: &Object) {
        if let Err(e) = validate(obj) {
            panic!("expected valid, got: {e}");
        }
    }

    /// Exactly one error, at `path`, whose message starts with `message`.
    #[track_caller]
    fn assert_error(obj: &Object, path: &str, message: &str) {
        let errs = errors(obj);
        assert!(
            errs.len() == 1 && errs[0].path == path && errs[0].message.starts_with(message),
            "expected exactly one error at {path} starting {message:?}, got {errs:#?}"
        );
    }

    // ------------------------------------------------------------ helpers

    #[test]
    fn dns_names() {
        for ok in ["a", "abc", "a-b", "0", "a1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64), "a b"] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        for ok in [
            "a.b",
            "example.com",
            "a-1.b-2.c",
            &format!("{}.b", "a".repeat(100)),
        ] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a.-b",
            "Example.com",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        assert!(dns1123_label_error(&"a".repeat(64)).is_some_and(|m| m.contains("63")));
        assert!(dns1123_subdomain_error(&"a".repeat(254)).is_some_and(|m| m.contains("253")));
        assert!(dns1123_label_error("ok").is_none());
    }

    #[test]
    fn label_keys_and_values() {
        for ok in [
            "app",
            "App_1.x-y",
            "example.com/name",
            "app.kubernetes.io/name",
            "a/b",
            &"a".repeat(63),
            &format!("{}/x", "p".repeat(253)),
        ] {
            assert!(validate_label_key(ok).is_ok(), "{ok}");
        }
        let err = |k: &str| validate_label_key(k).expect_err(k);
        assert!(err("").contains("name part must be non-empty"));
        assert!(err("a/").contains("name part must be non-empty"));
        assert!(err("/a").contains("prefix part must be non-empty"));
        assert!(err("a/b/c").contains("qualified name"));
        assert!(err("Example.com/a").starts_with("prefix part"));
        assert!(err(&format!("{}/x", "p".repeat(254))).contains("253"));
        assert!(err(&"a".repeat(64)).contains("63"));
        assert!(err("-a").starts_with("name part"));
        assert!(err("a_").starts_with("name part"));
        assert!(err("a b").starts_with("name part"));

        for ok in ["", "v", "V1.2_3-x", &"a".repeat(63)] {
            assert!(validate_label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-v", "v-", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(validate_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_maps_report_in_key_order() {
        let mut errs = Vec::new();
        validate_labels(
            &map(&[("ok", "fine"), ("z-bad-", "x"), ("a", "bad value")]),
            "metadata.labels",
            &mut errs,
        );
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path, "metadata.labels");
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"bad value\": "));
        assert!(errs[1].message.starts_with("Invalid value: \"z-bad-\": "));
    }

    #[test]
    fn quantities() {
        for ok in [
            "1",
            "0",
            "100m",
            "0.5",
            ".5",
            "5.",
            "1.5Gi",
            "64Mi",
            "1Ki",
            "2Ti",
            "1Pi",
            "1Ei",
            "1k",
            "1M",
            "1G",
            "1T",
            "1P",
            "1E",
            "10n",
            "10u",
            "1e3",
            "1E3",
            "1e-3",
            "1e+3",
            "+1",
            "-1",
            "128974848",
        ] {
            assert!(is_valid_quantity(ok), "{ok}");
        }
        for bad in [
            "", "abc", "1 Gi", "1gi", "1K", "Mi", ".", "1..2", "1.2.3", "1e", "1e+", "1ee3",
            "1Mii", "--1", "1m5", "0x10", " 1",
        ] {
            assert!(!is_valid_quantity(bad), "{bad}");
        }
        assert!(is_negative_quantity("-1") && is_negative_quantity("-0.5Gi"));
        assert!(!is_negative_quantity("-0") && !is_negative_quantity("-0e5"));
        assert!(!is_negative_quantity("1") && !is_negative_quantity("+1"));
    }

    #[test]
    fn port_names() {
        for ok in ["http", "web-80", "a", "h2c", &"a".repeat(15)] {
            assert!(is_valid_port_name(ok), "{ok}");
        }
        for bad in ["", "80", "HTTP", "a--b", "-a", "a-", "a_b", &"a".repeat(16)] {
            assert!(!is_valid_port_name(bad), "{bad}");
        }
    }

    #[test]
    fn ips_and_cidrs() {
        assert!(is_valid_ip("10.0.0.1") && is_valid_ip("::1") && is_valid_ip("fd00::10"));
        assert!(!is_valid_ip("10.0.0") && !is_valid_ip("") && !is_valid_ip("host"));
        assert!(is_valid_cidr("10.244.0.0/16") && is_valid_cidr("fd00::/64"));
        assert!(
            !is_valid_cidr("10.244.0.0/33")
                && !is_valid_cidr("10.244.0.0")
                && !is_valid_cidr("x/8")
        );
        assert!(!is_valid_cidr("10.0.0.0/"));
    }

    #[test]
    fn message_forms() {
        assert_eq!(
            FieldError::required("a", "").to_string(),
            "a: Required value"
        );
        assert_eq!(
            FieldError::required("a", "why").to_string(),
            "a: Required value: why"
        );
        assert_eq!(
            FieldError::invalid("a", quote("x"), "bad").to_string(),
            "a: Invalid value: \"x\": bad"
        );
        assert_eq!(
            FieldError::not_supported("a", "x", &["A", "B"]).to_string(),
            "a: Unsupported value: \"x\": supported values: \"A\", \"B\""
        );
        assert_eq!(
            FieldError::duplicate("a", quote("x")).to_string(),
            "a: Duplicate value: \"x\""
        );
        assert_eq!(
            FieldError::not_found("a", quote("x")).to_string(),
            "a: Not found: \"x\""
        );
        assert_eq!(
            FieldError::forbidden("a", "no").to_string(),
            "a: Forbidden: no"
        );
        assert!(FieldError::too_long("a", 10)
            .to_string()
            .starts_with("a: Too long: "));
    }

    // ------------------------------------------------------------ metadata

    #[test]
    fn object_without_kind() {
        let e = validate(&Object { kind: None }).expect_err("invalid");
        assert_eq!(e.errors, vec![FieldError::new("kind", "Required value")]);
        assert_eq!(
            e.to_string(),
            "Object \"\" is invalid: kind: Required value"
        );
    }

    #[test]
    fn valid_pod_passes() {
        assert_valid(&pod_with(|_| {}));
    }

    #[test]
    fn metadata_rules() {
        assert_error(
            &pod_with(|p| p.metadata = None),
            "metadata.name",
            "Required value",
        );
        assert_error(
            &pod_with(|p| p.metadata = meta("")),
            "metadata.name",
            "Required value",
        );
        assert_error(
            &pod_with(|p| p.metadata = meta("Web")),
            "metadata.name",
            "Invalid value: \"Web\": a lowercase RFC 1123 subdomain",
        );
        assert_valid(&pod_with(|p| p.metadata = meta("web.v1")));
        assert_error(
            &pod_with(|p| p.metadata = meta(&"a".repeat(254))),
            "metadata.name",
            "Invalid value",
        );
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.namespace = "Bad_NS".into();
                }
            }),
            "metadata.namespace",
            "Invalid value: \"Bad_NS\"",
        );
        assert_valid(&pod_with(|p| {
            if let Some(m) = p.metadata.as_mut() {
                m.namespace.clear();
            }
        }));
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.labels = map(&[("app", "web"), ("bad key", "v")]);
                }
            }),
            "metadata.labels",
            "Invalid value: \"bad key\"",
        );
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.labels = map(&[("app", "-web")]);
                }
            }),
            "metadata.labels",
            "Invalid value: \"-web\"",
        );
        assert_valid(&pod_with(|p| {
            if let Some(m) = p.metadata.as_mut() {
                m.annotations = map(&[
                    ("kubernetes.io/change-cause", "anything: at all, {}"),
                    ("note", ""),
                ]);
            }
        }));
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.annotations = map(&[("bad/key/x", "v")]);
                }
            }),
            "metadata.annotations",
            "Invalid value: \"bad/key/x\"",
        );
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.annotations = map(&[("big", &"x".repeat(300 * 1024))]);
                }
            }),
            "metadata.annotations",
            "Too long",
        );
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.generate_name = "Web-".into();
                }
            }),
            "metadata.generateName",
            "Invalid value",
        );
        assert_valid(&pod_with(|p| {
            if let Some(m) = p.metadata.as_mut() {
                m.generate_name = "web-".into();
            }
        }));
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.owner_references = vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "web-rs".into(),
                        ..Default::default()
                    }];
                }
            }),
            "metadata.ownerReferences[0].uid",
            "Required value",
        );
        assert_error(
            &pod_with(|p| {
                if let Some(m) = p.metadata.as_mut() {
                    m.finalizers = vec!["bad finalizer".into()];
                }
            }),
            "metadata.finalizers[0]",
            "Invalid value",
        );
    }

    #[test]
    fn display_reads_like_kubernetes() {
        let obj = pod_with(|p| {
            p.metadata = meta("Web");
            if let Some(s) = p.spec.as_mut() {
                s.restart_policy = "Sometimes".into();
            }
        });
        let e = validate(&obj).expect_err("invalid");
        assert_eq!(e.kind, "Pod");
        assert_eq!(e.name, "Web");
        let text = e.to_string();
        assert!(
            text.starts_with("Pod \"Web\" is invalid: metadata.name: Invalid value: \"Web\": "),
            "{text}"
        );
        assert!(
            text.ends_with("; spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""),
            "{text}"
        );
        assert!(e.has_path("spec.restartPolicy"));
    }

    // ------------------------------------------------------------ pods

    #[test]
    fn pod_spec_required_and_containers() {
        assert_error(&pod_with(|p| p.spec = None), "spec", "Required value");
        assert_error(
            &spec_with(|s| s.containers.clear()),
            "spec.containers",
            "Required value",
        );
        assert_error(
            &container_with(|c| c.name.clear()),
            "spec.containers[0].name",
            "Required value",
        );
        assert_error(
            &container_with(|c| c.name = "Nginx".into()),
            "spec.containers[0].name",
            "Invalid value: \"Nginx\"",
        );
        assert_error(
            &container_with(|c| c.image.clear()),
            "spec.containers[0].image",
            "Required value",
        );
        assert_error(
            &container_with(|c| c.image = " nginx".into()),
            "spec.containers[0].image",
            "Invalid value",
        );
        assert_error(
            &spec_with(|s| s.containers.push(container("nginx", "other"))),
            "spec.containers[1].name",
            "Duplicate value: \"nginx\"",
        );
        assert_error(
            &spec_with(|s| s.init_containers.push(container("nginx", "busybox"))),
            "spec.initContainers[0].name",
            "Duplicate value: \"nginx\"",
        );
        assert_valid(&spec_with(|s| {
            s.init_containers.push(container("init", "busybox"))
        }));
        assert_error(
            &spec_with(|s| s.init_containers.push(container("init", ""))),
            "spec.initContainers[0].image",
            "Required value",
        );
        assert_error(
            &container_with(|c| c.image_pull_policy = "Sometimes".into()),
            "spec.containers[0].imagePullPolicy",
            "Unsupported value",
        );
    }

    fn cport(port: i32) -> ContainerPort {
        ContainerPort {
            container_port: port,
            ..Default::default()
        }
    }

    #[test]
    fn container_ports() {
        assert_valid(&container_with(|c| {
            c.ports = vec![
                ContainerPort {
                    name: "http".into(),
                    container_port: 80,
                    host_port: 8080,
                    protocol: "TCP".into(),
                    host_ip: "0.0.0.0".into(),
                },
                ContainerPort {
                    name: "dns".into(),
                    container_port: 53,
                    protocol: "UDP".into(),
                    ..Default::default()
                },
                cport(65535),
            ]
        }));
        assert_error(
            &container_with(|c| c.ports = vec![cport(0)]),
            "spec.containers[0].ports[0].containerPort",
            "Required value",
        );
        assert_error(
            &container_with(|c| c.ports = vec![cport(65536)]),
            "spec.containers[0].ports[0].containerPort",
            "Invalid value: 65536: must be between 1 and 65535, inclusive",
        );
        assert_error(
            &container_with(|c| c.ports = vec![cport(-1)]),
            "spec.containers[0].ports[0].containerPort",
            "Invalid value: -1",
        );
        assert_error(
            &container_with(|c| {
                c.ports = vec![ContainerPort {
                    host_port: 70000,
                    ..cport(80)
                }]
            }),
            "spec.containers[0].ports[0].hostPort",
            "Invalid value: 70000",
        );
        assert_error(
            &container_with(|c| {
                c.ports = vec![ContainerPort {
                    protocol: "HTTP".into(),
                    ..cport(80)
                }]
            }),
            "spec.containers[0].ports[0].protocol",
            "Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
        );
        assert_error(
            &container_with(|c| {
                c.ports = vec![ContainerPort {
                    name: "Http_Port".into(),
                    ..cport(80)
                }]
            }),
            "spec.containers[0].ports[0].name",
            "Invalid value: \"Http_Port\"",
        );
        assert_error(
            &container_with(|c| {
                c.ports = vec![ContainerPort {
                    name: "a-very-long-port-name".into(),
                    ..cport(80)
                }]
            }),
            "spec.containers[0].ports[0].name",
            "Invalid value",
        );
        assert_error(
            &container_with(|c| {
                c.ports = vec![
                    ContainerPort {
                        name: "http".into(),
                        ..cport(80)
                    },
                    ContainerPort {
                        name: "http".into(),
                        ..cport(81)
                    },
                ]
            }),
            "spec.containers[0].ports[1].name",
            "Duplicate value: \"http\"",
        );
        // Port names are unique per container, not per pod.
        assert_valid(&spec_with(|s| {
            s.containers = vec![
                Container {
                    ports: vec![ContainerPort {
                        name: "http".into(),
                        ..cport(80)
                    }],
                    ..container("a", "x")
                },
                Container {
                    ports: vec![ContainerPort {
                        name: "http".into(),
                        ..cport(81)
                    }],
                    ..container("b", "x")
                },
            ]
        }));
        assert_error(
            &spec_with(|s| {
                s.containers = vec![
                    Container {
                        ports: vec![ContainerPort {
                            host_port: 8080,
                            ..cport(80)
                        }],
                        ..container("a", "x")
                    },
                    Container {
                        ports: vec![ContainerPort {
                            host_port: 8080,
                            ..cport(81)
                        }],
                        ..container("b", "x")
                    },
                ]
            }),
            "spec.containers[1].ports[0].hostPort",
            "Duplicate value: \"8080/TCP\"",
        );
    }

    #[test]
    fn env_and_resources() {
        assert_valid(&container_with(|c| {
            c.env = vec![EnvVar {
                name: "MY_VAR".into(),
                value: "".into(),
            }];
            c.resources = Some(ResourceRequirements {
                limits: map(&[("cpu", "500m"), ("memory", "128Mi")]),
                requests: map(&[("cpu", "0.25"), ("memory", "64Mi")]),
            });
        }));
        assert_error(
            &container_with(|c| c.env = vec![EnvVar::default()]),
            "spec.containers[0].env[0].name",
            "Required value",
        );
        assert_error(
            &container_with(|c| {
                c.env = vec![EnvVar {
                    name: "A=B".into(),
                    value: "x".into(),
                }]
            }),
            "spec.containers[0].env[0].name",
            "Invalid value",
        );
        assert_error(
            &container_with(|c| {
                c.resources = Some(ResourceRequirements {
                    limits: map(&[("memory", "lots")]),
                    requests: HashMap::new(),
                })
            }),
            "spec.containers[0].resources.limits[memory]",
            "Invalid value: \"lots\"",
        );
        assert_error(
            &container_with(|c| {
                c.resources = Some(ResourceRequirements {
                    limits: HashMap::new(),
                    requests: map(&[("cpu", "-1")]),
                })
            }),
            "spec.containers[0].resources.requests[cpu]",
            "Invalid value: \"-1\": must be greater than or equal to 0",
        );
        // Requests above limits are not this module's concern.
        assert_valid(&container_with(|c| {
            c.resources = Some(ResourceRequirements {
                limits: map(&[("cpu", "1")]),
                requests: map(&[("cpu", "2")]),
            })
        }));
    }

    #[test]
    fn policies() {
        for ok in ["", "Always", "OnFailure", "Never"] {
            assert_valid(&spec_with(|s| s.restart_policy = ok.into()));
        }
        assert_error(
            &spec_with(|s| s.restart_policy = "always".into()),
            "spec.restartPolicy",
            "Unsupported value: \"always\"",
        );
        for ok in ["", "ClusterFirst", "ClusterFirstWithHostNet", "Default"] {
            assert_valid(&spec_with(|s| s.dns_policy = ok.into()));
        }
        assert_error(
            &spec_with(|s| s.dns_policy = "Google".into()),
            "spec.dnsPolicy",
            "Unsupported value",
        );
        assert_error(
            &spec_with(|s| s.dns_policy = "None".into()),
            "spec.dnsConfig",
            "Required value",
        );
        assert_error(
            &spec_with(|s| {
                s.dns_policy = "None".into();
                s.dns_config = Some(PodDnsConfig::default());
            }),
            "spec.dnsConfig.nameservers",
            "Required value",
        );
        assert_valid(&spec_with(|s| {
            s.dns_policy = "None".into();
            s.dns_config = Some(PodDnsConfig {
                nameservers: vec!["1.1.1.1".into()],
                searches: vec!["svc.cluster.local.".into()],
                options: vec![PodDnsConfigOption {
                    name: "ndots".into(),
                    value: "2".into(),
                }],
            });
        }));
        assert_error(
            &spec_with(|s| {
                s.dns_config = Some(PodDnsConfig {
                    nameservers: vec!["dns.google".into()],
                    ..Default::default()
                })
            }),
            "spec.dnsConfig.nameservers[0]",
            "Invalid value",
        );
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations() {
        assert_valid(&spec_with(|s| {
            s.tolerations = vec![
                toleration(
                    "node-role.kubernetes.io/control-plane",
                    "Exists",
                    "",
                    "NoSchedule",
                ),
                toleration("dedicated", "Equal", "gpu", "NoExecute"),
                toleration("dedicated", "", "gpu", ""),
                toleration("", "Exists", "", ""),
                Toleration {
                    toleration_seconds: Some(30),
                    ..toleration("node.kubernetes.io/unreachable", "Exists", "", "NoExecute")
                },
            ]
        }));
        assert_error(
            &spec_with(|s| s.tolerations = vec![toleration("k", "Matches", "", "")]),
            "spec.tolerations[0].operator",
            "Unsupported value: \"Matches\": supported values: \"Equal\", \"Exists\"",
        );
        assert_error(
            &spec_with(|s| s.tolerations = vec![toleration("k", "Exists", "v", "")]),
            "spec.tolerations[0].value",
            "Invalid value: \"v\"",
        );
        assert_error(
            &spec_with(|s| s.tolerations = vec![toleration("k", "Equal", "v", "NoRun")]),
            "spec.tolerations[0].effect",
            "Unsupported value: \"NoRun\"",
        );
        assert_error(
            &spec_with(|s| s.tolerations = vec![toleration("", "Equal", "v", "")]),
            "spec.tolerations[0].operator",
            "Invalid value",
        );
        assert_error(
            &spec_with(|s| s.tolerations = vec![toleration("bad key", "Exists", "", "")]),
            "spec.tolerations[0].key",
            "Invalid value",
        );
        assert_error(
            &spec_with(|s| {
                s.tolerations = vec![Toleration {
                    toleration_seconds: Some(5),
                    ..toleration("k", "Exists", "", "NoSchedule")
                }]
            }),
            "spec.tolerations[0].effect",
            "Invalid value",
        );
    }

    fn node_req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn with_required_terms(terms: Vec<NodeSelectorTerm>) -> Object {
        spec_with(|s| {
            s.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    preferred_during_scheduling_ignored_during_execution: vec![],
                }),
            })
        })
    }

    fn term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: reqs,
            match_fields: vec![],
        }
    }

    #[test]
    fn node_selector_and_affinity() {
        assert_valid(&spec_with(|s| {
            s.node_selector = map(&[("disktype", "ssd")])
        }));
        assert_error(
            &spec_with(|s| s.node_selector = map(&[("disk type", "ssd")])),
            "spec.nodeSelector",
            "Invalid value: \"disk type\"",
        );
        assert_valid(&with_required_terms(vec![term(vec![
            node_req("zone", "In", &["a", "b"]),
            node_req("zone", "NotIn", &["c"]),
            node_req("gpu", "Exists", &[]),
            node_req("spot", "DoesNotExist", &[]),
            node_req("cores", "Gt", &["4"]),
            node_req("cores", "Lt", &["64"]),
        ])]));
        let base = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
        assert_error(
            &with_required_terms(vec![term(vec![node_req("zone", "Within", &["a"])])]),
            &format!("{base}[0].matchExpressions[0].operator"),
            "Unsupported value: \"Within\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\"",
        );
        assert_error(
            &with_required_terms(vec![term(vec![node_req("zone", "In", &[])])]),
            &format!("{base}[0].matchExpressions[0].values"),
            "Required value",
        );
        assert_error(
            &with_required_terms(vec![term(vec![node_req("zone", "Exists", &["a"])])]),
            &format!("{base}[0].matchExpressions[0].values"),
            "Forbidden",
        );
        assert_error(
            &with_required_terms(vec![term(vec![node_req("cores", "Gt", &["four"])])]),
            &format!("{base}[0].matchExpressions[0].values[0]"),
            "Invalid value",
        );
        assert_error(&with_required_terms(vec![]), base, "Required value");
        let mut t = term(vec![]);
        t.match_fields = vec![node_req("metadata.name", "In", &["wn1"])];
        assert_valid(&with_required_terms(vec![t.clone()]));
        t.match_fields = vec![node_req("spec.nodeName", "In", &["wn1"])];
        assert_error(
            &with_required_terms(vec![t]),
            &format!("{base}[0].matchFields[0].key"),
            "Unsupported value",
        );
        assert_error(
            &spec_with(|s| {
                s.affinity = Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: None,
                        preferred_during_scheduling_ignored_during_execution: vec![
                            PreferredSchedulingTerm {
                                weight: 0,
                                preference: Some(term(vec![node_req("zone", "In", &["a"])])),
                            },
                        ],
                    }),
                })
            }),
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
            "Invalid value: 0",
        );
    }

    fn http_probe(port: &str) -> Probe {
        Probe {
            http_get: Some(HttpGetAction {
                path: "/healthz".into(),
                port: port.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn probes() {
        assert_valid(&container_with(|c| {
            c.liveness_probe = Some(http_probe("8080"));
            c.readiness_probe = Some(Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: "http".into(),
                    host: String::new(),
                }),
                success_threshold: 2,
                ..Default::default()
            });
            c.startup_probe = Some(Probe {
                exec: Some(ExecAction {
                    command: vec!["true".into()],
                }),
                ..Default::default()
            });
        }));
        assert_error(
            &container_with(|c| c.liveness_probe = Some(Probe::default())),
            "spec.containers[0].livenessProbe",
            "Required value",
        );
        assert_error(
            &container_with(|c| {
                c.readiness_probe = Some(Probe {
                    exec: Some(ExecAction {
                        command: vec!["true".into()],
                    }),
                    ..http_probe("80")
                })
            }),
            "spec.containers[0].readinessProbe",
            "Forbidden: may not specify more than 1 handler type",
        );
        assert_error(
            &container_with(|c| c.liveness_probe = Some(http_probe("0"))),
            "spec.containers[0].livenessProbe.httpGet.port",
            "Invalid value: 0",
        );
        assert_error(
            &container_with(|c| c.liveness_probe = Some(http_probe(""))),
            "spec.containers[0].livenessProbe.httpGet.port",
            "Required value",
        );
        assert_error(
            &container_with(|c| c.liveness_probe = Some(http_probe("Bad_Name"))),
            "spec.containers[0].livenessProbe.httpGet.port",
            "Invalid value",
        );
        assert_error(
            &container_with(|c| {
                c.liveness_probe = Some(Probe {
                    period_seconds: -1,
                    ..http_probe("80")
                })
            }),
            "spec.containers[0].livenessProbe.periodSeconds",
            "Invalid value: -1",
        );
        assert_error(
            &container_with(|c| {
                c.liveness_probe = Some(Probe {
                    success_threshold: 2,
                    ..http_probe("80")
                })
            }),
            "spec.containers[0].livenessProbe.successThreshold",
            "Invalid value: 2: must be 1",
        );
        assert_error(
            &spec_with(|s| {
                s.init_containers = vec![Container {
                    readiness_probe: Some(http_probe("80")),
                    ..container("init", "busybox")
                }]
            }),
            "spec.initContainers[0].readinessProbe",
            "Forbidden",
        );
    }

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            host_path: None,
        }
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn volumes_and_mounts() {
        assert_valid(&spec_with(|s| {
            s.volumes = vec![
                volume("data"),
                Volume {
                    name: "host".into(),
                    empty_dir: None,
                    host_path: Some(HostPathVolumeSource {
                        path: "/var/log".into(),
                        r#type: "Directory".into(),
                    }),
                },
            ];
            s.containers[0].volume_mounts = vec![mount("data", "/data"), mount("host", "/logs")];
        }));
        assert_error(
            &spec_with(|s| s.volumes = vec![volume("data"), volume("data")]),
            "spec.volumes[1].name",
            "Duplicate value: \"data\"",
        );
        assert_error(
            &spec_with(|s| s.volumes = vec![volume("")]),
            "spec.volumes[0].name",
            "Required value",
        );
        assert_error(
            &spec_with(|s| s.volumes = vec![volume("Data")]),
            "spec.volumes[0].name",
            "Invalid value",
        );
        assert_error(
            &spec_with(|s| {
                s.volumes = vec![volume("data")];
                s.containers[0].volume_mounts = vec![mount("cache", "/cache")];
            }),
            "spec.containers[0].volumeMounts[0].name",
            "Not found: \"cache\"",
        );
        assert_error(
            &spec_with(|s| {
                s.volumes = vec![volume("data")];
                s.containers[0].volume_mounts = vec![mount("data", "")];
            }),
            "spec.containers[0].volumeMounts[0].mountPath",
            "Required value",
        );
        assert_error(
            &spec_with(|s| {
                s.volumes = vec![Volume {
                    host_path: Some(HostPathVolumeSource {
                        path: "/x".into(),
                        r#type: String::new(),
                    }),
                    ..volume("both")
                }]
            }),
            "spec.volumes[0].hostPath",
            "Forbidden",
        );
        assert_error(
            &spec_with(|s| {
                s.volumes = vec![Volume {
                    name: "h".into(),
                    empty_dir: None,
                    host_path: Some(HostPathVolumeSource {
                        path: "/x".into(),
                        r#type: "Dir".into(),
                    }),
                }]
            }),
            "spec.volumes[0].hostPath.type",
            "Unsupported value",
        );
    }

    #[test]
    fn other_pod_fields() {
        assert_valid(&spec_with(|s| {
            s.node_name = "wn1".into();
            s.hostname = "web-0".into();
            s.subdomain = "web".into();
        }));
        assert_error(
            &spec_with(|s| s.node_name = "WN1".into()),
            "spec.nodeName",
            "Invalid value",
        );
        assert_error(
            &spec_with(|s| s.hostname = "a.b".into()),
            "spec.hostname",
            "Invalid value",
        );
    }

    // ------------------------------------------------------------ workloads

    #[test]
    fn seed_replica_set_with_match_expressions_passes() {
        let obj = rs_with(|s| {
            s.selector = Some(LabelSelector {
                match_labels: HashMap::new(),
                match_expressions: vec![
                    expr("tier", "In", &["frontend"]),
                    expr("app", "In", &["nginx-app"]),
                ],
            });
            let mut t = template(&[("app", "nginx-app"), ("tier", "frontend")]);
            t.spec = Some(PodSpec {
                containers: vec![Container {
                    ports: vec![cport(80)],
                    ..container("nginx-container", "nginx")
                }],
                ..Default::default()
            });
            s.template = Some(t);
            s.replicas = Some(3);
        });
        assert_valid(&obj);
        let mut defaulted = obj.clone();
        crate::defaults::apply_defaults(&mut defaulted);
        assert_valid(&defaulted);
        // Only the `tier` expression, as in the seed's rs.yml, passes too.
        let mut tier_only = obj;
        if let Some(Kind::ReplicaSet(rs)) = tier_only.kind.as_mut() {
            if let Some(sel) = rs.spec.as_mut().and_then(|s| s.selector.as_mut()) {
                sel.match_expressions.truncate(1);
            }
        }
        assert_valid(&tier_only);
    }

    #[test]
    fn seed_replica_set_with_mismatched_selector_fails() {
        let mut obj = rs_with(|s| s.template = Some(template(&[("app", "api")])));
        if let Some(Kind::ReplicaSet(rs)) = obj.kind.as_mut() {
            rs.metadata = meta("mismatch-rs");
        }
        let e = validate(&obj).expect_err("mismatch");
        assert_eq!(
            e.to_string(),
            "ReplicaSet \"mismatch-rs\" is invalid: spec.template.metadata.labels: Invalid value: \
             {\"app\":\"api\"}: selector does not match template labels"
        );
    }

    #[test]
    fn replica_set_rules() {
        assert_valid(&rs_with(|_| {}));
        assert_valid(&rs_with(|s| s.replicas = None));
        assert_valid(&rs_with(|s| s.replicas = Some(0)));
        assert_error(
            &rs_with(|s| s.replicas = Some(-1)),
            "spec.replicas",
            "Invalid value: -1",
        );
        assert_error(
            &rs_with(|s| s.selector = None),
            "spec.selector",
            "Required value",
        );
        assert_error(
            &rs_with(|s| s.selector = Some(LabelSelector::default())),
            "spec.selector",
            "Invalid value: {}: empty selector",
        );
        let e = errors(&rs_with(|s| {
            s.selector = Some(LabelSelector {
                match_labels: HashMap::new(),
                match_expressions: vec![expr("app", "Equals", &["web"])],
            })
        }));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "spec.selector");
        assert!(
            e[0].message.contains("\"Equals\"") && e[0].message.contains("\"app\""),
            "{e:?}"
        );
        let e = errors(&rs_with(|s| {
            s.selector = Some(LabelSelector {
                match_labels: HashMap::new(),
                match_expressions: vec![expr("app", "In", &[])],
            })
        }));
        assert!(e.len() == 1 && e[0].path == "spec.selector", "{e:?}");
        assert_error(
            &rs_with(|s| s.template = None),
            "spec.template",
            "Required value",
        );
        assert_error(
            &rs_with(|s| s.template = Some(template(&[]))),
            "spec.template.metadata.labels",
            "Required value",
        );
        assert_error(
            &rs_with(|s| {
                if let Some(t) = s.template.as_mut() {
                    t.spec = None;
                }
            }),
            "spec.template.spec",
            "Required value",
        );
        assert_error(
            &rs_with(|s| {
                if let Some(spec) = s.template.as_mut().and_then(|t| t.spec.as_mut()) {
                    spec.containers[0].image.clear();
                }
            }),
            "spec.template.spec.containers[0].image",
            "Required value",
        );
        assert_error(
            &rs_with(|s| {
                if let Some(spec) = s.template.as_mut().and_then(|t| t.spec.as_mut()) {
                    spec.restart_policy = "Never".into();
                }
            }),
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"Never\": supported values: \"Always\"",
        );
        // Extra template labels are fine.
        assert_valid(&rs_with(|s| {
            s.template = Some(template(&[("app", "web"), ("v", "2")]))
        }));
    }

    #[test]
    fn daemon_set_rules() {
        assert_valid(&ds_with(|_| {}));
        assert_valid(&ds_with(|s| {
            s.update_strategy = Some(DaemonSetUpdateStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: "10%".into(),
                    max_surge: "0".into(),
                }),
            });
            s.revision_history_limit = Some(10);
        }));
        assert_valid(&ds_with(|s| {
            s.update_strategy = Some(DaemonSetUpdateStrategy {
                r#type: "OnDelete".into(),
                rolling_update: None,
            })
        }));
        assert_error(
            &ds_with(|s| {
                s.update_strategy = Some(DaemonSetUpdateStrategy {
                    r#type: "Recreate".into(),
                    rolling_update: None,
                })
            }),
            "spec.updateStrategy.type",
            "Unsupported value: \"Recreate\": supported values: \"RollingUpdate\", \"OnDelete\"",
        );
        assert_error(
            &ds_with(|s| {
                s.update_strategy = Some(DaemonSetUpdateStrategy {
                    r#type: "RollingUpdate".into(),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: "0".into(),
                        max_surge: "0%".into(),
                    }),
                })
            }),
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "Invalid value",
        );
        assert_error(
            &ds_with(|s| {
                s.update_strategy = Some(DaemonSetUpdateStrategy {
                    r#type: "RollingUpdate".into(),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: "150%".into(),
                        max_surge: String::new(),
                    }),
                })
            }),
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "Invalid value: \"150%\"",
        );
        assert_error(
            &ds_with(|s| s.selector = None),
            "spec.selector",
            "Required value",
        );
        assert_error(
            &ds_with(|s| s.template = Some(template(&[("app", "other")]))),
            "spec.template.metadata.labels",
            "Invalid value: {\"app\":\"other\"}: selector does not match template labels",
        );
        assert_error(
            &ds_with(|s| s.revision_history_limit = Some(-1)),
            "spec.revisionHistoryLimit",
            "Invalid value",
        );
    }

    #[test]
    fn replication_controller_rules() {
        assert_valid(&rc_with(|_| {}));
        assert_error(
            &rc_with(|s| s.replicas = Some(-2)),
            "spec.replicas",
            "Invalid value: -2",
        );
        assert_error(
            &rc_with(|s| s.selector.clear()),
            "spec.selector",
            "Required value",
        );
        assert_error(
            &rc_with(|s| s.selector = map(&[("app", "api")])),
            "spec.template.metadata.labels",
            "Invalid value: {\"app\":\"web\",\"tier\":\"fe\"}: selector does not match template labels",
        );
        assert_error(
            &rc_with(|s| s.selector = map(&[("app", "web"), ("bad key", "x")])),
            "spec.selector",
            "Invalid value: \"bad key\"",
        );
        assert_error(
            &rc_with(|s| s.template = None),
            "spec.template",
            "Required value",
        );
        assert_error(
            &rc_with(|s| {
                if let Some(t) = s.template.as_mut() {
                    t.metadata = None;
                }
            }),
            "spec.template.metadata.labels",
            "Required value",
        );
        assert_error(
            &rc_with(|s| {
                if let Some(spec) = s.template.as_mut().and_then(|t| t.spec.as_mut()) {
                    spec.restart_policy = "OnFailure".into();
                }
            }),
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"OnFailure\"",
        );
        assert_valid(&rc_with(|s| {
            if let Some(spec) = s.template.as_mut().and_then(|t| t.spec.as_mut()) {
                spec.restart_policy = "Always".into();
            }
        }));
        let rc = Object {
            kind: Some(Kind::ReplicationController(ReplicationController {
                metadata: meta("x"),
                ..Default::default()
            })),
        };
        assert_error(&rc, "spec", "Required value");
    }

    // ------------------------------------------------------------ services

    #[test]
    fn service_rules() {
        assert_valid(&svc_with(|_| {}));
        assert_valid(&svc_with(|s| {
            s.r#type = "NodePort".into();
            s.ports = vec![
                ServicePort {
                    node_port: 30080,
                    protocol: "TCP".into(),
                    target_port: "http".into(),
                    ..port("http", 80)
                },
                port("metrics", 9090),
            ];
            s.cluster_ip = "10.96.0.10".into();
            s.session_affinity = "ClientIP".into();
            s.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIpConfig {
                    timeout_seconds: Some(10800),
                }),
            });
            s.external_traffic_policy = "Local".into();
        }));
        let svc_named = |name: &str| {
            let mut obj = svc_with(|_| {});
            if let Some(Kind::Service(s)) = obj.kind.as_mut() {
                s.metadata = meta(name);
            }
            obj
        };
        assert_error(
            &svc_named("web.v1"),
            "metadata.name",
            "Invalid value: \"web.v1\"",
        );
        let svc_none = Object {
            kind: Some(Kind::Service(Service {
                metadata: meta("web"),
                ..Default::default()
            })),
        };
        assert_error(&svc_none, "spec", "Required value");
        assert_error(
            &svc_with(|s| s.r#type = "Internal".into()),
            "spec.type",
            "Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\"",
        );
        assert_error(
            &svc_with(|s| s.ports.clear()),
            "spec.ports",
            "Required value",
        );
        // Headless and ExternalName services need no ports.
        assert_valid(&svc_with(|s| {
            s.ports.clear();
            s.cluster_ip = "None".into();
        }));
        assert_valid(&svc_with(|s| {
            s.ports.clear();
            s.selector.clear();
            s.r#type = "ExternalName".into();
            s.external_name = "db.example.com".into();
        }));
        assert_error(
            &svc_with(|s| {
                s.ports.clear();
                s.r#type = "ExternalName".into();
            }),
            "spec.externalName",
            "Required value",
        );
        assert_error(
            &svc_with(|s| s.ports[0].port = 0),
            "spec.ports[0].port",
            "Invalid value: 0",
        );
        assert_error(
            &svc_with(|s| s.ports[0].port = 65536),
            "spec.ports[0].port",
            "Invalid value: 65536",
        );
        assert_error(
            &svc_with(|s| s.ports = vec![port("", 80), port("b", 81)]),
            "spec.ports[0].name",
            "Required value",
        );
        assert_error(
            &svc_with(|s| s.ports = vec![port("a", 80), port("a", 81)]),
            "spec.ports[1].name",
            "Duplicate value: \"a\"",
        );
        assert_error(
            &svc_with(|s| s.ports = vec![port("A", 80)]),
            "spec.ports[0].name",
            "Invalid value",
        );
        assert_error(
            &svc_with(|s| s.ports = vec![port("a", 80), port("b", 80)]),
            "spec.ports[1]",
            "Duplicate value: \"80/TCP\"",
        );
        assert_valid(&svc_with(|s| {
            s.ports = vec![
                ServicePort {
                    protocol: "TCP".into(),
                    ..port("dns-tcp", 53)
                },
                ServicePort {
                    protocol: "UDP".into(),
                    ..port("dns", 53)
                },
            ]
        }));
        assert_error(
            &svc_with(|s| s.ports[0].protocol = "ICMP".into()),
            "spec.ports[0].protocol",
            "Unsupported value: \"ICMP\"",
        );
        assert_error(
            &svc_with(|s| s.ports[0].node_port = 30080),
            "spec.ports[0].nodePort",
            "Forbidden: may not be used when `type` is 'ClusterIP'",
        );
        assert_error(
            &svc_with(|s| {
                s.r#type = "NodePort".into();
                s.ports[0].node_port = 8080;
            }),
            "spec.ports[0].nodePort",
            "Invalid value: 8080",
        );
        assert_valid(&svc_with(|s| {
            s.r#type = "LoadBalancer".into();
            s.ports[0].node_port = 32767;
        }));
        assert_error(
            &svc_with(|s| s.ports[0].target_port = "0".into()),
            "spec.ports[0].targetPort",
            "Invalid value: 0",
        );
        assert_error(
            &svc_with(|s| s.ports[0].target_port = "70000".into()),
            "spec.ports[0].targetPort",
            "Invalid value: 70000",
        );
        assert_error(
            &svc_with(|s| s.ports[0].target_port = "Not_A_Name".into()),
            "spec.ports[0].targetPort",
            "Invalid value: \"Not_A_Name\"",
        );
        assert_valid(&svc_with(|s| s.ports[0].target_port = "http".into()));
        assert_valid(&svc_with(|s| s.ports[0].target_port.clear()));
        assert_valid(&svc_with(|s| s.cluster_ip = "fd00::10".into()));
        assert_error(
            &svc_with(|s| s.cluster_ip = "10.96.0.300".into()),
            "spec.clusterIP",
            "Invalid value: \"10.96.0.300\"",
        );
        assert_error(
            &svc_with(|s| {
                s.r#type = "NodePort".into();
                s.cluster_ip = "None".into();
            }),
            "spec.clusterIP",
            "Invalid value",
        );
        assert_error(
            &svc_with(|s| s.session_affinity = "Sticky".into()),
            "spec.sessionAffinity",
            "Unsupported value: \"Sticky\": supported values: \"None\", \"ClientIP\"",
        );
        assert_error(
            &svc_with(|s| {
                s.session_affinity = "ClientIP".into();
                s.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIpConfig {
                        timeout_seconds: Some(0),
                    }),
                });
            }),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "Invalid value: 0",
        );
        assert_error(
            &svc_with(|s| s.selector = map(&[("app", "bad value")])),
            "spec.selector",
            "Invalid value: \"bad value\"",
        );
        assert_error(
            &svc_with(|s| s.external_ips = vec!["nope".into()]),
            "spec.externalIPs[0]",
            "Invalid value",
        );
        assert_error(
            &svc_with(|s| s.external_traffic_policy = "Local".into()),
            "spec.externalTrafficPolicy",
            "Invalid value",
        );
    }

    #[test]
    fn endpoints_rules() {
        let ep = |subsets: Vec<EndpointSubset>| Object {
            kind: Some(Kind::Endpoints(Endpoints {
                metadata: meta("web"),
                subsets,
                ..Default::default()
            })),
        };
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let eport = |name: &str, port: i32| EndpointPort {
            name: name.into(),
            port,
            ..Default::default()
        };
        assert_valid(&ep(vec![]));
        assert_valid(&ep(vec![EndpointSubset {
            addresses: vec![addr("10.244.1.5"), addr("fd00::5")],
            not_ready_addresses: vec![addr("10.244.1.6")],
            ports: vec![eport("http", 8080), eport("metrics", 9090)],
        }]));
        assert_error(
            &ep(vec![EndpointSubset {
                addresses: vec![addr("10.244.1.5"), addr("pod-a")],
                ports: vec![eport("", 80)],
                ..Default::default()
            }]),
            "subsets[0].addresses[1].ip",
            "Invalid value: \"pod-a\"",
        );
        assert_error(
            &ep(vec![EndpointSubset {
                not_ready_addresses: vec![addr("")],
                ports: vec![eport("", 80)],
                ..Default::default()
            }]),
            "subsets[0].notReadyAddresses[0].ip",
            "Invalid value",
        );
        assert_error(
            &ep(vec![EndpointSubset {
                addresses: vec![addr("10.0.0.1")],
                ports: vec![eport("", 0)],
                ..Default::default()
            }]),
            "subsets[0].ports[0].port",
            "Invalid value: 0",
        );
        assert_error(
            &ep(vec![EndpointSubset {
                addresses: vec![addr("10.0.0.1")],
                ports: vec![EndpointPort {
                    protocol: "XTP".into(),
                    ..eport("", 80)
                }],
                ..Default::default()
            }]),
            "subsets[0].ports[0].protocol",
            "Unsupported value",
        );
    }

    #[test]
    fn node_rules() {
        let node = |name: &str, taints: Vec<Taint>| Object {
            kind: Some(Kind::Node(Node {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    ..Default::default()
                }),
                spec: Some(NodeSpec {
                    taints,
                    pod_cidr: "10.244.1.0/24".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        let taint = |key: &str, effect: &str| Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        };
        assert_valid(&node(
            "wn1.example.com",
            vec![
                taint("node-role.kubernetes.io/control-plane", "NoSchedule"),
                taint("node-role.kubernetes.io/control-plane", "NoExecute"),
            ],
        ));
        assert_error(&node("WN1", vec![]), "metadata.name", "Invalid value");
        assert_error(
            &node("wn1", vec![taint("k", "Never")]),
            "spec.taints[0].effect",
            "Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        );
        assert_error(
            &node("wn1", vec![taint("k", "")]),
            "spec.taints[0].effect",
            "Required value",
        );
        assert_error(
            &node("wn1", vec![taint("bad key", "NoSchedule")]),
            "spec.taints[0].key",
            "Invalid value",
        );
        assert_error(
            &node("wn1", vec![taint("", "NoSchedule")]),
            "spec.taints[0].key",
            "Required value",
        );
        assert_error(
            &node(
                "wn1",
                vec![taint("k", "NoSchedule"), taint("k", "NoSchedule")],
            ),
            "spec.taints[1]",
            "Duplicate value",
        );
    }

    #[test]
    fn namespace_rules() {
        let ns = |name: &str| Object {
            kind: Some(Kind::Namespace(Namespace {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    ..Default::default()
                }),
                spec: Some(NamespaceSpec {
                    finalizers: vec!["kubernetes".into()],
                }),
                status: Some(NamespaceStatus {
                    phase: "Active".into(),
                }),
                ..Default::default()
            })),
        };
        assert_valid(&ns("kube-system"));
        assert_error(
            &ns("team.a"),
            "metadata.name",
            "Invalid value: \"team.a\": a lowercase RFC 1123 label",
        );
        assert_error(&ns(&"a".repeat(64)), "metadata.name", "Invalid value");
        assert_error(&ns(""), "metadata.name", "Required value");
    }

    #[test]
    fn event_and_lease_rules() {
        let event = |name: &str| Object {
            kind: Some(Kind::Event(Event {
                metadata: meta("web.17a8b3c2d1e0f"),
                involved_object: Some(ObjectReference {
                    kind: "Pod".into(),
                    name: name.into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                reason: "Scheduled".into(),
                r#type: "Normal".into(),
                count: 1,
                ..Default::default()
            })),
        };
        assert_valid(&event("web"));
        assert_error(&event(""), "involvedObject.name", "Required value");
        let no_ref = Object {
            kind: Some(Kind::Event(Event {
                metadata: meta("e1"),
                ..Default::default()
            })),
        };
        assert_error(&no_ref, "involvedObject.name", "Required value");

        let lease = |d: Option<i32>| Object {
            kind: Some(Kind::Lease(Lease {
                metadata: meta("kube-scheduler"),
                spec: Some(LeaseSpec {
                    holder_identity: "cp-1".into(),
                    lease_duration_seconds: d,
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        assert_valid(&lease(Some(15)));
        assert_valid(&lease(None));
        assert_error(
            &lease(Some(0)),
            "spec.leaseDurationSeconds",
            "Invalid value: 0: must be greater than 0",
        );
        assert_error(
            &lease(Some(-5)),
            "spec.leaseDurationSeconds",
            "Invalid value: -5",
        );
    }

    // ------------------------------------------------------------ updates

    fn with_uid(mut obj: Object, uid: &str) -> Object {
        if let Some(Kind::Pod(p)) = obj.kind.as_mut() {
            if let Some(m) = p.metadata.as_mut() {
                m.uid = uid.into();
            }
        }
        obj
    }

    #[track_caller]
    fn assert_update_error(old: &Object, new: &Object, path: &str, message: &str) {
        let errs = validate_update(old, new)
            .err()
            .map(|e| e.errors)
            .unwrap_or_default();
        assert!(
            errs.len() == 1 && errs[0].path == path && errs[0].message.starts_with(message),
            "expected one error at {path} starting {message:?}, got {errs:#?}"
        );
    }

    #[test]
    fn update_checks_new_object_and_metadata() {
        let old = with_uid(pod_with(|_| {}), "u1");
        assert!(validate_update(&old, &old).is_ok());
        // An update may omit the uid.
        assert!(validate_update(&old, &with_uid(pod_with(|_| {}), "")).is_ok());
        assert_update_error(
            &old,
            &with_uid(pod_with(|_| {}), "u2"),
            "metadata.uid",
            "Invalid value: \"u2\": field is immutable",
        );
        assert_update_error(
            &old,
            &with_uid(pod_with(|p| p.metadata = meta("other")), "u1"),
            "metadata.name",
            "Invalid value: \"other\": field is immutable",
        );
        assert_update_error(
            &old,
            &with_uid(
                pod_with(|p| {
                    if let Some(m) = p.metadata.as_mut() {
                        m.namespace = "prod".into();
                    }
                }),
                "u1",
            ),
            "metadata.namespace",
            "Invalid value: \"prod\": field is immutable",
        );
        // Labels may change.
        assert!(validate_update(
            &old,
            &with_uid(
                pod_with(|p| {
                    if let Some(m) = p.metadata.as_mut() {
                        m.labels = map(&[("app", "web")]);
                    }
                }),
                "u1"
            )
        )
        .is_ok());
        // The new object itself is validated.
        assert_update_error(
            &old,
            &container_with(|c| c.image.clear()),
            "spec.containers[0].image",
            "Required value",
        );
        // Changing kinds is refused.
        assert_update_error(
            &old,
            &svc_with(|_| {}),
            "kind",
            "Invalid value: \"Service\"",
        );
    }

    #[test]
    fn node_pod_cidr_is_immutable_once_set() {
        let node = |cidr: &str| Object {
            kind: Some(Kind::Node(Node {
                metadata: Some(ObjectMeta {
                    name: "wn1".into(),
                    ..Default::default()
                }),
                spec: Some(proto::NodeSpec {
                    pod_cidr: cidr.into(),
                    pod_cidrs: if cidr.is_empty() {
                        vec![]
                    } else {
                        vec![cidr.into()]
                    },
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        // From "" it may be set; unchanged is fine.
        assert!(validate_update(&node(""), &node("10.244.1.0/24")).is_ok());
        assert!(validate_update(&node("10.244.1.0/24"), &node("10.244.1.0/24")).is_ok());
        for new in ["10.244.2.0/24", ""] {
            assert_update_error(
                &node("10.244.1.0/24"),
                &node(new),
                "spec.podCIDR",
                "Forbidden: node updates may not change podCIDR",
            );
        }
    }

    #[test]
    fn pod_update_rules() {
        let old = pod_with(|_| {});
        assert!(validate_update(&old, &container_with(|c| c.image = "nginx:1.26".into())).is_ok());
        assert!(validate_update(&old, &spec_with(|s| s.node_name = "wn1".into())).is_ok());
        let tol = toleration("k", "Exists", "", "NoSchedule");
        let with_tol = spec_with(|s| s.tolerations = vec![tol.clone()]);
        assert!(validate_update(&old, &with_tol).is_ok());
        let msg = "Forbidden: pod updates may not change fields other than spec.containers[*].image, spec.tolerations (only additions)";
        assert_update_error(&with_tol, &old, "spec", msg);
        assert_update_error(
            &old,
            &spec_with(|s| s.restart_policy = "Never".into()),
            "spec",
            msg,
        );
        assert_update_error(
            &old,
            &spec_with(|s| s.containers.push(container("sidecar", "busybox"))),
            "spec",
            msg,
        );
        assert_update_error(
            &old,
            &container_with(|c| c.ports = vec![cport(80)]),
            "spec",
            msg,
        );
        let bound = spec_with(|s| s.node_name = "wn1".into());
        assert_update_error(
            &bound,
            &spec_with(|s| s.node_name = "wn2".into()),
            "spec",
            msg,
        );
        assert_update_error(&bound, &old, "spec", msg);
        let e = validate_update(&old, &spec_with(|s| s.restart_policy = "Never".into()))
            .expect_err("forbidden");
        assert_eq!(
            e.to_string(),
            format!("Pod \"web\" is invalid: spec: {msg}")
        );
    }

    #[test]
    fn selector_immutability() {
        let old = rs_with(|_| {});
        assert!(validate_update(&old, &rs_with(|s| s.replicas = Some(5))).is_ok());
        // The same selector written differently is not a change.
        let same = rs_with(|s| {
            s.selector = Some(LabelSelector {
                match_labels: map(&[("app", "web")]),
                match_expressions: vec![],
            })
        });
        assert!(validate_update(&old, &same).is_ok());
        let changed = rs_with(|s| {
            s.selector = Some(LabelSelector {
                match_labels: map(&[("app", "web")]),
                match_expressions: vec![expr("tier", "Exists", &[])],
            });
            s.template = Some(template(&[("app", "web"), ("tier", "fe")]));
        });
        assert_update_error(&old, &changed, "spec.selector", "Invalid value");
        let errs = validate_update(&old, &changed)
            .err()
            .map(|e| e.errors)
            .unwrap_or_default();
        assert!(errs[0].message.ends_with("field is immutable"), "{errs:?}");

        let old = ds_with(|_| {});
        let changed = ds_with(|s| {
            s.selector = Some(LabelSelector {
                match_labels: map(&[("app", "agent"), ("v", "2")]),
                match_expressions: vec![],
            });
            s.template = Some(template(&[("app", "agent"), ("v", "2")]));
        });
        assert_update_error(&old, &changed, "spec.selector", "Invalid value");
        // An RC's selector may change (Kubernetes allows it).
        assert!(validate_update(
            &rc_with(|_| {}),
            &rc_with(|s| s.selector = map(&[("app", "web"), ("tier", "fe")]))
        )
        .is_ok());
    }

    #[test]
    fn service_cluster_ip_is_immutable_once_set() {
        let unset = svc_with(|_| {});
        let set = svc_with(|s| s.cluster_ip = "10.96.0.10".into());
        assert!(validate_update(&unset, &set).is_ok());
        assert!(validate_update(&set, &set).is_ok());
        assert!(validate_update(
            &set,
            &svc_with(|s| {
                s.cluster_ip = "10.96.0.10".into();
                s.ports[0].port = 81;
            })
        )
        .is_ok());
        assert_update_error(
            &set,
            &svc_with(|s| s.cluster_ip = "10.96.0.11".into()),
            "spec.clusterIP",
            "Invalid value: \"10.96.0.11\": field is immutable",
        );
        assert_update_error(
            &set,
            &unset,
            "spec.clusterIP",
            "Invalid value: \"\": field is immutable",
        );
    }
}
