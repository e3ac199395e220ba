//! Node selection by labels and name: `spec.nodeSelector` and node affinity.
//!
//! - `nodeSelector`: every label must be on the node with that value.
//! - Required node affinity: the node must match at least one of
//!   `nodeSelectorTerms`; a term matches when all its `matchExpressions`
//!   (on labels) and `matchFields` (only `metadata.name`, with `In` or
//!   `NotIn`) match; a term with neither matches nothing, as does an empty
//!   list of terms.
//! - Operators: `In`, `NotIn` (also true when the label is absent),
//!   `Exists`, `DoesNotExist`, `Gt`, `Lt` (the label and the single value
//!   both integers).
//! - Preferred node affinity: the sum of the weights of the matching terms,
//!   added to the node's score.
//!
//! DaemonSet pods are pinned with `matchFields` on `metadata.name`;
//! [`candidate_node_names`] reads those names so the scheduler can look at
//! those nodes only instead of all of them.

use rkube_api::proto::{Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod};
use std::collections::HashMap;

/// The only field `matchFields` can name.
pub const FIELD_NODE_NAME: &str = "metadata.name";

static EMPTY_LABELS: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();

fn labels(node: &Node) -> &HashMap<String, String> {
    match node.metadata.as_ref() {
        Some(m) => &m.labels,
        None => EMPTY_LABELS.get_or_init(HashMap::new),
    }
}

fn name(node: &Node) -> &str {
    node.metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("")
}

/// Whether `labels` hold every key of `selector` with its value.
pub fn matches_node_selector(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a `matchExpressions` requirement holds for `labels`.
pub fn expression_matches(req: &NodeSelectorRequirement, labels: &HashMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| req.values.contains(v)),
        "NotIn" => !value.is_some_and(|v| req.values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, req.values.as_slice()) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a `matchFields` requirement holds for the node named `node_name`.
pub fn field_matches(req: &NodeSelectorRequirement, node_name: &str) -> bool {
    if req.key != FIELD_NODE_NAME {
        return false;
    }
    let listed = req.values.iter().any(|v| v == node_name);
    match req.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

/// Whether `node` matches a node selector term.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let labels = labels(node);
    let name = name(node);
    term.match_expressions
        .iter()
        .all(|r| expression_matches(r, labels))
        && term.match_fields.iter().all(|r| field_matches(r, name))
}

/// Whether `node` matches a required node selector (any of its terms).
pub fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

fn required(pod: &Pod) -> Option<&NodeSelector> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// Whether `node` satisfies the pod's `nodeSelector` and required node
/// affinity.
pub fn pod_matches_node(pod: &Pod, node: &Node) -> bool {
    if let Some(spec) = pod.spec.as_ref() {
        if !spec.node_selector.is_empty()
            && !matches_node_selector(&spec.node_selector, labels(node))
        {
            return false;
        }
    }
    required(pod).is_none_or(|sel| node_selector_matches(sel, node))
}

/// The sum of the weights of the pod's preferred node affinity terms that
/// `node` matches.
pub fn preferred_weight(pod: &Pod, node: &Node) -> i64 {
    let Some(na) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
    else {
        return 0;
    };
    na.preferred_during_scheduling_ignored_during_execution
        .iter()
        .filter(|p| p.weight != 0)
        .filter(|p| p.preference.as_ref().is_some_and(|t| term_matches(t, node)))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// The only node names the pod's required affinity can match, when every
/// term pins `metadata.name` with `In`; `None` when any node may match.
/// Sorted and deduplicated.
pub fn candidate_node_names(pod: &Pod) -> Option<Vec<String>> {
    let sel = required(pod)?;
    if sel.node_selector_terms.is_empty() {
        return None;
    }
    let mut names = Vec::new();
    for term in &sel.node_selector_terms {
        let pin = term
            .match_fields
            .iter()
            .find(|r| r.key == FIELD_NODE_NAME && r.operator == "In")?;
        names.extend(pin.values.iter().cloned());
    }
    names.sort();
    names.dedup();
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{Affinity, NodeAffinity, ObjectMeta, PodSpec, PreferredSchedulingTerm};

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn term(
        exprs: Vec<NodeSelectorRequirement>,
        fields: Vec<NodeSelectorRequirement>,
    ) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: exprs,
            match_fields: fields,
        }
    }

    fn pod_with(
        selector: &[(&str, &str)],
        required: Option<Vec<NodeSelectorTerm>>,
        preferred: Vec<(i32, NodeSelectorTerm)>,
    ) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_selector: selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: required.map(
                            |terms| NodeSelector {
                                node_selector_terms: terms,
                            },
                        ),
                        preferred_during_scheduling_ignored_during_execution: preferred
                            .into_iter()
                            .map(|(weight, t)| PreferredSchedulingTerm {
                                weight,
                                preference: Some(t),
                            })
                            .collect(),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn operators() {
        let l: HashMap<String, String> = [("zone", "a"), ("cores", "8")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(expression_matches(&req("zone", "In", &["a", "b"]), &l));
        assert!(!expression_matches(&req("zone", "In", &["b"]), &l));
        assert!(!expression_matches(&req("rack", "In", &["a"]), &l));
        assert!(expression_matches(&req("zone", "NotIn", &["b"]), &l));
        assert!(!expression_matches(&req("zone", "NotIn", &["a"]), &l));
        assert!(
            expression_matches(&req("rack", "NotIn", &["a"]), &l),
            "absent label"
        );
        assert!(expression_matches(&req("zone", "Exists", &[]), &l));
        assert!(!expression_matches(&req("rack", "Exists", &[]), &l));
        assert!(expression_matches(&req("rack", "DoesNotExist", &[]), &l));
        assert!(!expression_matches(&req("zone", "DoesNotExist", &[]), &l));
        assert!(expression_matches(&req("cores", "Gt", &["4"]), &l));
        assert!(!expression_matches(&req("cores", "Gt", &["8"]), &l));
        assert!(expression_matches(&req("cores", "Lt", &["16"]), &l));
        assert!(!expression_matches(&req("cores", "Lt", &["8"]), &l));
        assert!(
            !expression_matches(&req("zone", "Gt", &["1"]), &l),
            "not a number"
        );
        assert!(!expression_matches(&req("cores", "Gt", &["x"]), &l));
        assert!(!expression_matches(&req("cores", "Gt", &["1", "2"]), &l));
        assert!(!expression_matches(&req("rack", "Lt", &["1"]), &l));
        assert!(!expression_matches(&req("zone", "Bogus", &["a"]), &l));
    }

    #[test]
    fn fields_on_node_name() {
        assert!(field_matches(
            &req(FIELD_NODE_NAME, "In", &["n1", "n2"]),
            "n1"
        ));
        assert!(!field_matches(&req(FIELD_NODE_NAME, "In", &["n2"]), "n1"));
        assert!(field_matches(&req(FIELD_NODE_NAME, "NotIn", &["n2"]), "n1"));
        assert!(!field_matches(
            &req(FIELD_NODE_NAME, "NotIn", &["n1"]),
            "n1"
        ));
        assert!(!field_matches(&req("metadata.uid", "In", &["n1"]), "n1"));
        assert!(!field_matches(&req(FIELD_NODE_NAME, "Exists", &[]), "n1"));
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = node("n1", &[("disk", "ssd"), ("zone", "a")]);
        assert!(pod_matches_node(&pod_with(&[], None, vec![]), &n));
        assert!(pod_matches_node(
            &pod_with(&[("disk", "ssd")], None, vec![]),
            &n
        ));
        assert!(pod_matches_node(
            &pod_with(&[("disk", "ssd"), ("zone", "a")], None, vec![]),
            &n
        ));
        assert!(!pod_matches_node(
            &pod_with(&[("disk", "ssd"), ("zone", "b")], None, vec![]),
            &n
        ));
        assert!(!pod_matches_node(
            &pod_with(&[("gpu", "yes")], None, vec![]),
            &n
        ));
        assert!(!pod_matches_node(
            &pod_with(&[("disk", "ssd")], None, vec![]),
            &node("bare", &[])
        ));
    }

    #[test]
    fn terms_are_ored_expressions_anded() {
        let n = node("n1", &[("disk", "ssd"), ("zone", "a")]);
        let ssd_in_b = term(
            vec![req("disk", "In", &["ssd"]), req("zone", "In", &["b"])],
            vec![],
        );
        let ssd_in_a = term(
            vec![req("disk", "In", &["ssd"]), req("zone", "In", &["a"])],
            vec![],
        );
        assert!(!pod_matches_node(
            &pod_with(&[], Some(vec![ssd_in_b.clone()]), vec![]),
            &n
        ));
        assert!(pod_matches_node(
            &pod_with(&[], Some(vec![ssd_in_b, ssd_in_a]), vec![]),
            &n
        ));
        // Expressions and fields of one term are ANDed too.
        let both = term(
            vec![req("disk", "Exists", &[])],
            vec![req(FIELD_NODE_NAME, "In", &["n2"])],
        );
        assert!(!pod_matches_node(
            &pod_with(&[], Some(vec![both]), vec![]),
            &n
        ));
    }

    #[test]
    fn empty_terms_match_nothing() {
        let n = node("n1", &[("disk", "ssd")]);
        assert!(!pod_matches_node(&pod_with(&[], Some(vec![]), vec![]), &n));
        assert!(!pod_matches_node(
            &pod_with(&[], Some(vec![term(vec![], vec![])]), vec![]),
            &n
        ));
        // No required affinity at all: anything goes.
        let mut p = pod_with(&[], None, vec![]);
        assert!(pod_matches_node(&p, &n));
        p.spec.as_mut().unwrap().affinity = None;
        assert!(pod_matches_node(&p, &n));
    }

    #[test]
    fn selector_and_affinity_both_apply() {
        let n = node("n1", &[("disk", "ssd")]);
        let aff = vec![term(vec![req("disk", "Exists", &[])], vec![])];
        assert!(pod_matches_node(
            &pod_with(&[("disk", "ssd")], Some(aff.clone()), vec![]),
            &n
        ));
        assert!(!pod_matches_node(
            &pod_with(&[("disk", "hdd")], Some(aff), vec![]),
            &n
        ));
    }

    #[test]
    fn daemonset_pin_by_name() {
        let pin = |names: &[&str]| term(vec![], vec![req(FIELD_NODE_NAME, "In", names)]);
        let p = pod_with(&[], Some(vec![pin(&["n1"])]), vec![]);
        assert!(pod_matches_node(&p, &node("n1", &[])));
        assert!(!pod_matches_node(&p, &node("n2", &[])));
        assert_eq!(candidate_node_names(&p), Some(vec!["n1".to_string()]));
        let p = pod_with(
            &[],
            Some(vec![pin(&["n2", "n1"]), pin(&["n1", "n3"])]),
            vec![],
        );
        assert_eq!(
            candidate_node_names(&p),
            Some(vec!["n1".into(), "n2".into(), "n3".into()])
        );
        // A term without a name pin allows any node.
        let p = pod_with(
            &[],
            Some(vec![
                pin(&["n1"]),
                term(vec![req("a", "Exists", &[])], vec![]),
            ]),
            vec![],
        );
        assert_eq!(candidate_node_names(&p), None);
        assert_eq!(candidate_node_names(&pod_with(&[], None, vec![])), None);
        let not_in = term(vec![], vec![req(FIELD_NODE_NAME, "NotIn", &["n1"])]);
        assert_eq!(
            candidate_node_names(&pod_with(&[], Some(vec![not_in]), vec![])),
            None
        );
    }

    #[test]
    fn preferred_weights_add_up() {
        let n = node("n1", &[("disk", "ssd"), ("zone", "a")]);
        let p = pod_with(
            &[],
            None,
            vec![
                (10, term(vec![req("disk", "In", &["ssd"])], vec![])),
                (5, term(vec![req("zone", "In", &["a"])], vec![])),
                (50, term(vec![req("zone", "In", &["b"])], vec![])),
            ],
        );
        assert_eq!(preferred_weight(&p, &n), 15);
        assert_eq!(preferred_weight(&p, &node("n2", &[])), 0);
        assert_eq!(preferred_weight(&pod_with(&[], None, vec![]), &n), 0);
    }
}
