//! Taints and tolerations, with Kubernetes' matching rules.
//!
//! A toleration tolerates a taint when its effect is empty or equal to the
//! taint's, its key is empty or equal to the taint's, and either its
//! operator is `Exists` or (operator `Equal` or empty) its value equals the
//! taint's. So `{operator: Exists}` with no key tolerates every taint.
//!
//! Only `NoSchedule` and `NoExecute` taints keep pods off a node;
//! `PreferNoSchedule` ones only lower its score.

use rkube_api::proto::{Taint, Toleration};

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// The taint a node whose Ready condition is False (or missing) carries in
/// Kubernetes.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint a node whose Ready condition is Unknown carries.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint a cordoned (`spec.unschedulable`) node carries.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Whether `t` tolerates a taint given by its parts.
pub fn tolerates_parts(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    if !t.effect.is_empty() && t.effect != effect {
        return false;
    }
    if !t.key.is_empty() && t.key != key {
        return false;
    }
    match t.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => t.value == value,
        _ => false,
    }
}

/// Whether `t` tolerates `taint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    tolerates_parts(t, &taint.key, &taint.value, &taint.effect)
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// Whether any of `tolerations` tolerates a `key` taint (empty value) with
/// effect NoSchedule: the taints Kubernetes puts on not-ready, unreachable
/// and cordoned nodes, which this scheduler checks as conditions instead.
pub fn tolerates_no_schedule_key(tolerations: &[Toleration], key: &str) -> bool {
    tolerations
        .iter()
        .any(|t| tolerates_parts(t, key, "", NO_SCHEDULE))
}

/// The first NoSchedule or NoExecute taint none of `tolerations` tolerates.
pub fn first_untolerated<'a>(tolerations: &[Toleration], taints: &'a [Taint]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        (taint.effect == NO_SCHEDULE || taint.effect == NO_EXECUTE)
            && !tolerated(tolerations, taint)
    })
}

/// How many PreferNoSchedule taints none of `tolerations` tolerates.
pub fn untolerated_preferences(tolerations: &[Toleration], taints: &[Taint]) -> u32 {
    taints
        .iter()
        .filter(|taint| taint.effect == PREFER_NO_SCHEDULE && !tolerated(tolerations, taint))
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn equal_compares_values() {
        let t = taint("dedicated", "gpu", NO_SCHEDULE);
        assert!(tolerates(
            &tol("dedicated", "Equal", "gpu", NO_SCHEDULE),
            &t
        ));
        assert!(
            tolerates(&tol("dedicated", "", "gpu", NO_SCHEDULE), &t),
            "empty operator is Equal"
        );
        assert!(!tolerates(
            &tol("dedicated", "Equal", "cpu", NO_SCHEDULE),
            &t
        ));
        assert!(!tolerates(&tol("dedicated", "Equal", "", NO_SCHEDULE), &t));
        assert!(!tolerates(&tol("other", "Equal", "gpu", NO_SCHEDULE), &t));
    }

    #[test]
    fn exists_matches_any_value() {
        let t = taint("dedicated", "gpu", NO_SCHEDULE);
        assert!(tolerates(&tol("dedicated", "Exists", "", NO_SCHEDULE), &t));
        assert!(tolerates(&tol("dedicated", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("other", "Exists", "", ""), &t));
    }

    #[test]
    fn empty_key_with_exists_matches_every_taint() {
        let all = tol("", "Exists", "", "");
        for t in [
            taint("a", "1", NO_SCHEDULE),
            taint("b", "", NO_EXECUTE),
            taint("c", "x", PREFER_NO_SCHEDULE),
        ] {
            assert!(tolerates(&all, &t));
        }
        // ...but only for its effect, when it names one.
        let no_exec = tol("", "Exists", "", NO_EXECUTE);
        assert!(tolerates(&no_exec, &taint("b", "", NO_EXECUTE)));
        assert!(!tolerates(&no_exec, &taint("a", "1", NO_SCHEDULE)));
    }

    #[test]
    fn effect_must_match_unless_empty() {
        let t = taint("k", "v", NO_EXECUTE);
        assert!(tolerates(&tol("k", "Equal", "v", ""), &t));
        assert!(tolerates(&tol("k", "Equal", "v", NO_EXECUTE), &t));
        assert!(!tolerates(&tol("k", "Equal", "v", NO_SCHEDULE), &t));
    }

    #[test]
    fn unknown_operator_tolerates_nothing() {
        assert!(!tolerates(
            &tol("k", "Bogus", "v", ""),
            &taint("k", "v", NO_SCHEDULE)
        ));
    }

    #[test]
    fn first_untolerated_skips_preferences_and_tolerated() {
        let taints = vec![
            taint("soft", "", PREFER_NO_SCHEDULE),
            taint("a", "1", NO_SCHEDULE),
            taint("b", "2", NO_EXECUTE),
        ];
        assert_eq!(first_untolerated(&[], &taints).unwrap().key, "a");
        let tols = vec![tol("a", "Exists", "", "")];
        assert_eq!(first_untolerated(&tols, &taints).unwrap().key, "b");
        let tols = vec![
            tol("a", "Exists", "", ""),
            tol("b", "Equal", "2", NO_EXECUTE),
        ];
        assert!(first_untolerated(&tols, &taints).is_none());
        assert_eq!(untolerated_preferences(&tols, &taints), 1);
        assert_eq!(
            untolerated_preferences(&[tol("soft", "Exists", "", "")], &taints),
            0
        );
    }

    #[test]
    fn condition_taints() {
        assert!(!tolerates_no_schedule_key(&[], TAINT_NOT_READY));
        // The NoExecute tolerations every pod gets by default do not let it
        // be scheduled onto a not-ready node.
        let default_tols = vec![
            tol(TAINT_NOT_READY, "Exists", "", NO_EXECUTE),
            tol(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE),
        ];
        assert!(!tolerates_no_schedule_key(&default_tols, TAINT_NOT_READY));
        // A DaemonSet-style toleration without effect does.
        assert!(tolerates_no_schedule_key(
            &[tol(TAINT_UNREACHABLE, "Exists", "", "")],
            TAINT_UNREACHABLE
        ));
        assert!(tolerates_no_schedule_key(
            &[tol(TAINT_UNSCHEDULABLE, "Exists", "", NO_SCHEDULE)],
            TAINT_UNSCHEDULABLE
        ));
    }
}
