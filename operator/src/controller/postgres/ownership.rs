//! Who may use an existing role or schema (design.md 3.2), decided from its `COMMENT ON` record alone:
//! the resource of the namespace and name recorded there (the same one, or one created again after a
//! `Retain` deletion), or a resource whose `ordersystem.io/adopt-from` annotation names that record.

use super::super::validate::ValidSpec;
use crate::names::{self, RecordedOwner};

/// What this resource may do with an existing role or schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Recorded for this resource as it is now.
    Ours,
    /// This resource may take it: recorded for the same namespace and name by an earlier incarnation,
    /// for this uid in the form of earlier releases, or for the owner the adoption annotation names. The
    /// record is rewritten for this resource; `from` says whose it was.
    Take { from: String },
    /// Recorded for someone else (or not at all): left alone, reported as a conflict.
    Foreign { owner: String },
}

impl Claim {
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::Foreign { .. })
    }
}

/// Whether an object looked up (`None`: it does not exist; `Some(comment)`: it does) exists and this
/// resource may use it.
pub fn exists_and_usable(spec: &ValidSpec, found: &Option<Option<String>>) -> bool {
    found
        .as_ref()
        .is_some_and(|comment| !claim(spec, comment.as_deref()).is_foreign())
}

/// The claim of `spec`'s resource on an object whose comment is `comment`.
pub fn claim(spec: &ValidSpec, comment: Option<&str>) -> Claim {
    let adopt_from = spec.adopt_from.as_deref();
    let this = spec.qualified_name();
    match RecordedOwner::parse(comment) {
        RecordedOwner::Resource { owner, uid } if owner == this && uid == spec.uid => Claim::Ours,
        RecordedOwner::Resource { owner, uid } if owner == this => Claim::Take {
            from: format!("an earlier OrderSystem {owner} (uid {uid}) kept with deletionPolicy Retain"),
        },
        RecordedOwner::Resource { owner, .. } if adopt_from == Some(owner.as_str()) => Claim::Take {
            from: format!(
                "OrderSystem {owner}, as the {} annotation asks",
                names::ADOPT_FROM_ANNOTATION
            ),
        },
        RecordedOwner::Resource { owner, .. } => Claim::Foreign {
            owner: format!("OrderSystem {owner}"),
        },
        RecordedOwner::Uid(uid) if uid == spec.uid => Claim::Take {
            from: "this resource, recorded by uid alone".into(),
        },
        RecordedOwner::Uid(uid) if adopt_from == Some(uid.as_str()) => Claim::Take {
            from: format!(
                "the OrderSystem with uid {uid}, as the {} annotation asks",
                names::ADOPT_FROM_ANNOTATION
            ),
        },
        RecordedOwner::Uid(uid) => Claim::Foreign {
            owner: format!("the OrderSystem with uid {uid}"),
        },
        RecordedOwner::Unknown => Claim::Foreign {
            owner: "no OrderSystem (it carries no ownership record)".into(),
        },
    }
}

/// The sentence of a conflict on `object`, saying how to resolve it.
pub fn conflict_message(spec: &ValidSpec, object: &str, owner: &str) -> String {
    let adopt = match owner.strip_prefix("OrderSystem ") {
        Some(recorded) => format!(
            "; to take it over, annotate this resource with {}={recorded}",
            names::ADOPT_FROM_ANNOTATION
        ),
        None => String::new(),
    };
    format!(
        "{object} exists and belongs to {owner}, not to {}/{}{adopt}",
        spec.namespace, spec.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
    use crate::controller::validate::validate;

    fn spec(adopt_from: Option<&str>) -> ValidSpec {
        let mut spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
        spec.adopt_from = adopt_from.map(str::to_string);
        spec
    }

    fn comment_of(namespace: &str, name: &str, uid: &str) -> String {
        names::owner_comment(namespace, name, uid)
    }

    #[test]
    fn a_record_of_this_resource_is_ours() {
        let spec = spec(None);
        let comment = comment_of(&spec.namespace, &spec.name, &spec.uid);
        assert_eq!(claim(&spec, Some(&comment)), Claim::Ours);
    }

    #[test]
    fn a_record_of_an_earlier_resource_of_the_same_namespace_and_name_is_taken() {
        let spec = spec(None);
        let comment = comment_of(&spec.namespace, &spec.name, "old-uid");
        let claim = claim(&spec, Some(&comment));
        assert!(
            matches!(&claim, Claim::Take { from } if from.contains("old-uid")),
            "{claim:?}"
        );
    }

    #[test]
    fn another_resources_record_is_foreign_unless_the_annotation_names_it() {
        let comment = comment_of("team", "a-shop", "u-2");
        let conflict = claim(&spec(None), Some(&comment));
        assert_eq!(
            conflict,
            Claim::Foreign {
                owner: "OrderSystem team/a-shop".into()
            }
        );
        assert!(matches!(
            claim(&spec(Some("team/a-shop")), Some(&comment)),
            Claim::Take { .. }
        ));
        assert!(claim(&spec(Some("team/other")), Some(&comment)).is_foreign());
    }

    #[test]
    fn a_record_by_uid_alone_is_taken_by_that_uid_or_by_the_annotation() {
        let spec_now = spec(None);
        let own = format!("{}{}", names::UID_OWNER_COMMENT_PREFIX, spec_now.uid);
        assert!(matches!(claim(&spec_now, Some(&own)), Claim::Take { .. }));
        let other = format!("{}u-0", names::UID_OWNER_COMMENT_PREFIX);
        assert!(claim(&spec_now, Some(&other)).is_foreign());
        assert!(matches!(
            claim(&spec(Some("u-0")), Some(&other)),
            Claim::Take { .. }
        ));
    }

    #[test]
    fn an_object_without_a_record_is_never_taken() {
        assert!(claim(&spec(None), None).is_foreign());
        assert!(claim(&spec(None), Some("made by hand")).is_foreign());
    }

    #[test]
    fn a_conflict_says_how_to_take_the_object_over() {
        let spec = spec(None);
        let message = conflict_message(&spec, "schema os_x", "OrderSystem team/a-shop");
        assert!(
            message.ends_with("annotate this resource with ordersystem.io/adopt-from=team/a-shop"),
            "{message}"
        );
        let unrecorded = conflict_message(
            &spec,
            "role os_x",
            "no OrderSystem (it carries no ownership record)",
        );
        assert!(!unrecorded.contains("annotate"), "{unrecorded}");
    }
}
