//! Every name the operator gives or recognises, defined once: the finalizer, the field manager, labels and
//! annotations, child object names, Postgres identifiers and consumer group ids. Pure functions only.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The prefix of every annotation (and the finalizer) the operator reads or writes.
pub const ANNOTATION_PREFIX: &str = "ordersystem.io/";
/// Finalizer guarding the external cleanup (topic and schemas) of an `OrderSystem`.
pub const FINALIZER: &str = "ordersystem.io/cleanup";
/// The one server-side-apply field manager of the operator.
pub const FIELD_MANAGER: &str = "ordersystem-operator";
/// Pod template annotation: hash of the service's database Secret, so a credential change rolls that
/// service only.
pub const SECRET_HASH_ANNOTATION: &str = "ordersystem.io/secret-hash";
/// Pod template annotation: hash of the service's Kafka identity Secret (with SASL), so a hand edit of
/// it rolls that service only.
pub const KAFKA_SECRET_HASH_ANNOTATION: &str = "ordersystem.io/kafka-secret-hash";
/// Annotation on a service's Kafka identity Secret: a hash of the SCRAM credential last applied to the
/// broker, so it is applied again only when the password in the Secret changes.
pub const KAFKA_CREDENTIAL_APPLIED_ANNOTATION: &str = "ordersystem.io/kafka-credential-applied";
/// Annotation acknowledging that the topic with the id given as its value is gone or replaced: the
/// operator then creates the topic anew (or adopts the new one) and records the new id.
pub const RECREATE_TOPIC_ANNOTATION: &str = "ordersystem.io/recreate-topic";
/// Annotation asking to rotate one service's database credentials (value: `order`, `invoicing` or
/// `shipping`); removed by the operator once the rotation is complete.
pub const ROTATE_CREDENTIALS_ANNOTATION: &str = "ordersystem.io/rotate-credentials";
/// Annotation on a service's database Secret while a rotation is under way: the login that is disabled
/// once every pod of the service runs with the Secret's new credentials.
pub const RETIRE_LOGIN_ANNOTATION: &str = "ordersystem.io/retire-login";
/// Annotation letting `deletionPolicy: Delete` delete a topic that existed before this resource claimed
/// it (value `"true"`); without it such a topic is kept.
pub const DELETE_FOUND_TOPIC_ANNOTATION: &str = "ordersystem.io/delete-found-topic";
/// Label on the ConfigMaps that record which resource claimed a topic of a Kafka cluster.
pub const TOPIC_CLAIM_LABEL: &str = "ordersystem.io/topic-claim";
/// Value of `app.kubernetes.io/part-of` on every child object.
pub const PART_OF: &str = "ordersystem";
/// Label carrying the owning `OrderSystem`'s name; owned objects are watched by it.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label carrying the service (`order`, `invoicing`, `shipping`).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label selecting everything this operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Postgres `COMMENT ON` prefix recording which resource owns a role or schema:
/// `ordersystem.io/owner=<namespace>/<name> uid=<uid>`. The namespace and name decide ownership, so a
/// resource deleted with `Retain` and created again under the same name takes its data back; the uid
/// says which incarnation wrote it.
pub const OWNER_COMMENT_PREFIX: &str = "ordersystem.io/owner=";
/// The ownership comment of releases that recorded the owner's uid alone: `ordersystem.io/owner-uid=<uid>`.
/// Read, never written: the owner rewrites it in the current form on its next reconcile.
pub const UID_OWNER_COMMENT_PREFIX: &str = "ordersystem.io/owner-uid=";
/// Annotation letting a resource take over schemas and roles recorded for another one: the value is the
/// owner as recorded, `<namespace>/<name>` (or, for records with a uid alone, that uid).
pub const ADOPT_FROM_ANNOTATION: &str = "ordersystem.io/adopt-from";
/// Registry and repository prefix of the project's service images, unless the operator's
/// `--image-registry` names a mirror.
pub const IMAGE_REGISTRY: &str = "ghcr.io/ordersystem";
/// Postgres identifiers are at most 63 bytes (NAMEDATALEN - 1).
pub const PG_IDENT_MAX: usize = 63;

/// The three services of an order system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Order,
    Invoicing,
    Shipping,
}

impl Service {
    /// In rollout order of the first deployment: consumers first, the producer last.
    pub const ALL: [Service; 3] = [Service::Invoicing, Service::Shipping, Service::Order];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Invoicing => "invoicing",
            Self::Shipping => "shipping",
        }
    }

    /// True for the services that consume the topic in their own group.
    pub fn is_consumer(self) -> bool {
        !matches!(self, Self::Order)
    }
}

/// Labels of every object belonging to one service of one `OrderSystem`; the selector uses a subset.
pub fn labels(system: &str, service: Service) -> BTreeMap<String, String> {
    let mut labels = selector_labels(system, service);
    labels.insert("app.kubernetes.io/name".into(), service.as_str().into());
    labels.insert("app.kubernetes.io/part-of".into(), PART_OF.into());
    labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
    labels
}

/// The immutable Deployment selector: instance and component.
pub fn selector_labels(system: &str, service: Service) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE_LABEL.to_string(), system.to_string()),
        (COMPONENT_LABEL.to_string(), service.as_str().to_string()),
    ])
}

/// Name of a service's Deployment, Service, PDB and ServiceAccount.
pub fn child_name(system: &str, service: Service) -> String {
    format!("{system}-{}", service.as_str())
}

/// Name of the Secret with a service's database credentials.
pub fn db_secret_name(system: &str, service: Service) -> String {
    format!("{system}-{}-db", service.as_str())
}

/// Name of the Secret with a service's Kafka identity (SCRAM username and password).
pub fn kafka_secret_name(system: &str, service: Service) -> String {
    format!("{system}-{}-kafka", service.as_str())
}

/// A service's Kafka user: `<namespace>.<name>.<service>`, unique per Kafka cluster like the group ids.
pub fn kafka_user(namespace: &str, system: &str, service: Service) -> String {
    format!("{namespace}.{system}.{}", service.as_str())
}

/// Consumer group id: `<namespace>.<name>.<service>`, so two systems on one Kafka never share a group.
pub fn group_id(namespace: &str, system: &str, service: Service) -> String {
    format!("{namespace}.{system}.{}", service.as_str())
}

/// Name of the ConfigMap recording the claim on `topic` of the Kafka cluster `cluster_id`: named by both,
/// so every resource reaching that cluster, through whichever address, looks up the same record.
pub fn topic_claim_name(cluster_id: &str, topic: &str) -> String {
    format!(
        "ordersystem-topic-{}",
        &hash_hex(format!("{cluster_id}/{topic}").as_bytes())[..16]
    )
}

/// The tag of the service images this build of the operator was released with (its version); the
/// operator's default for a resource deployed for the first time, unless `--default-image-tag` says
/// otherwise.
pub const DEFAULT_IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// Where the operator takes the project's service images from: `<registry>/<service>:<tag>`, with
/// `default_tag` for a service deployed for the first time without a tag in its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceImages {
    /// Registry and repository prefix, e.g. `ghcr.io/ordersystem` or a mirror's `registry.example.com/ordersystem`.
    pub registry: String,
    pub default_tag: String,
}

impl Default for ServiceImages {
    /// The project's registry and the tag of this operator's release.
    fn default() -> Self {
        Self {
            registry: IMAGE_REGISTRY.to_string(),
            default_tag: DEFAULT_IMAGE_TAG.to_string(),
        }
    }
}

impl ServiceImages {
    /// The project's image of `service` with `tag`: `<registry>/<service>:<tag>`.
    pub fn image(&self, service: Service, tag: &str) -> String {
        format!("{}/{}:{tag}", self.registry, service.as_str())
    }

    /// The image of a service deployed for the first time: the default tag.
    pub fn default_image(&self, service: Service) -> String {
        self.image(service, &self.default_tag)
    }
}

/// Why `registry` is not a registry and repository prefix (`host[:port][/path]`, lowercase, no tag, no
/// trailing `/`), or `None` when it is one.
pub fn image_registry_problem(registry: &str) -> Option<&'static str> {
    let (host, path) = registry.split_once('/').unwrap_or((registry, ""));
    let (name, port) = host.split_once(':').unwrap_or((host, "1"));
    let component = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
    };
    if registry.is_empty() {
        Some("is empty")
    } else if !component(name) || port.parse::<u16>().is_err() {
        Some("does not start with a registry host (lowercase letters, digits, '.', '-', an optional :port)")
    } else if !path.is_empty() && !path.split('/').all(component) {
        Some("has a path that is not lowercase letters, digits and '.', '_', '-' between '/' (and no tag)")
    } else {
        None
    }
}

/// Why `tag` is not an image tag (as the OCI distribution spec defines it: 1 to 128 of `A-Z a-z 0-9 _
/// . -`, not starting with `.` or `-`), or `None` when it is one. The CRD's pattern for `imageTag` says
/// the same.
pub fn image_tag_problem(tag: &str) -> Option<&'static str> {
    match tag.chars().next() {
        None => Some("is empty"),
        Some('.' | '-') => Some("starts with '.' or '-'"),
        _ if tag.len() > IMAGE_TAG_MAX => Some("is longer than 128 characters"),
        _ if !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) =>
        {
            Some("has a character other than letters, digits, '_', '.' and '-'")
        }
        _ => None,
    }
}

/// Longest image tag.
pub const IMAGE_TAG_MAX: usize = 128;
/// The pattern of an image tag, for the CRD (same rule as [`image_tag_problem`]).
pub const IMAGE_TAG_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// Schema and role name of a service, injective in (namespace, name, service):
/// - `os_<namespace>_<name>_<service>` when namespace and name are letters and digits only and it fits
///   in 63 bytes: the four parts split back at `_`, which neither may contain;
/// - otherwise `os_<namespace>_<name>_<hash>_<service>`, `-` and `.` turned into `_` and the front cut to
///   fit, where `<hash>` is taken from `<namespace>/<name>` (`/` is in neither): two such names differ
///   unless 32 bits of SHA-256 collide, and never equal a name of the first form, which has four parts.
///
/// A resource whose status records its schema names keeps them (`validate`), so names given by a release
/// with another rule are never changed under a running system.
pub fn pg_identifier(namespace: &str, system: &str, service: Service) -> String {
    let service = service.as_str();
    let plain = |part: &str| part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let simple = format!("os_{namespace}_{system}_{service}");
    if plain(namespace) && plain(system) && simple.len() <= PG_IDENT_MAX {
        return simple;
    }
    let hash = short_hash(format!("{namespace}/{system}").as_bytes());
    let front: String = format!("os_{namespace}_{system}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        })
        .collect();
    let room = PG_IDENT_MAX - hash.len() - service.len() - 2;
    // `front` is ASCII, so byte slicing is on char boundaries.
    format!("{}_{hash}_{service}", &front[..front.len().min(room)])
}

/// The second login role of a service, taking turns with the schema-owning role on each credential
/// rotation: `<identifier>_b`, or for a 62- or 63-byte identifier its cut with a hash, so it stays within
/// 63 bytes and distinct.
pub fn alternate_login(identifier: &str) -> String {
    if identifier.len() + 2 <= PG_IDENT_MAX {
        return format!("{identifier}_b");
    }
    let hash = short_hash(identifier.as_bytes());
    // 63 = prefix + '_' + 8 hex digits + "_b"; identifiers are ASCII.
    format!("{}_{hash}_b", &identifier[..PG_IDENT_MAX - 3 - hash.len()])
}

/// Why a Postgres identifier is not acceptable, or `None`.
pub fn pg_identifier_problem(ident: &str) -> Option<&'static str> {
    let mut chars = ident.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Some("must match ^[a-z_][a-z0-9_]*$");
    }
    if ident.len() > PG_IDENT_MAX {
        return Some("is longer than 63 bytes");
    }
    if ident.starts_with("pg_") {
        return Some("must not start with pg_ (reserved)");
    }
    if ident == "public" || ident == "information_schema" {
        return Some("must not be public or information_schema");
    }
    None
}

/// Quotes a Postgres identifier (`"` doubled), for identifiers that already passed validation.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// First 8 hex digits of SHA-256: short, stable, and collision-safe enough for name suffixes and
/// change-detection annotations.
pub fn short_hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The full SHA-256 of some bytes, hex: for annotations that must change whenever the input changes.
pub fn hash_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `COMMENT ON` text recording the owning resource.
pub fn owner_comment(namespace: &str, system: &str, uid: &str) -> String {
    format!("{OWNER_COMMENT_PREFIX}{namespace}/{system} uid={uid}")
}

/// The owner an ownership comment records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedOwner {
    /// `namespace/name`, with the uid of the resource that wrote it.
    Resource { owner: String, uid: String },
    /// A uid alone (the comment of earlier releases).
    Uid(String),
    /// No comment, or one this operator did not write.
    Unknown,
}

impl RecordedOwner {
    /// Reads a `COMMENT ON` text written by [`owner_comment`] or by an earlier release.
    pub fn parse(comment: Option<&str>) -> Self {
        let Some(comment) = comment else {
            return Self::Unknown;
        };
        if let Some(uid) = comment.strip_prefix(UID_OWNER_COMMENT_PREFIX) {
            return Self::Uid(uid.to_string());
        }
        match comment
            .strip_prefix(OWNER_COMMENT_PREFIX)
            .and_then(|rest| rest.split_once(" uid="))
        {
            Some((owner, uid)) if owner.contains('/') => Self::Resource {
                owner: owner.to_string(),
                uid: uid.to_string(),
            },
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_follow_the_distribution_spec() {
        for good in ["0.1.0", "v2", "1.2.3-rc.1", "_x", "a".repeat(128).as_str()] {
            assert_eq!(image_tag_problem(good), None, "{good}");
        }
        for (bad, problem) in [
            ("", "is empty"),
            ("-x", "starts with '.' or '-'"),
            (".x", "starts with '.' or '-'"),
            (
                "1.0 beta",
                "has a character other than letters, digits, '_', '.' and '-'",
            ),
            (
                "a:b",
                "has a character other than letters, digits, '_', '.' and '-'",
            ),
        ] {
            assert_eq!(image_tag_problem(bad), Some(problem), "{bad}");
        }
        assert_eq!(
            image_tag_problem(&"a".repeat(129)),
            Some("is longer than 128 characters")
        );
        let images = ServiceImages::default();
        assert_eq!(
            images.image(Service::Invoicing, "2.0.0"),
            "ghcr.io/ordersystem/invoicing:2.0.0"
        );
        assert_eq!(
            images.default_image(Service::Order),
            format!("ghcr.io/ordersystem/order:{DEFAULT_IMAGE_TAG}")
        );
    }

    #[test]
    fn a_mirror_is_a_registry_host_and_a_lowercase_path() {
        let mirror = ServiceImages {
            registry: "registry.example.com:5000/mirror/ordersystem".into(),
            default_tag: "1.2.3".into(),
        };
        assert_eq!(
            mirror.default_image(Service::Shipping),
            "registry.example.com:5000/mirror/ordersystem/shipping:1.2.3"
        );
        for good in ["ghcr.io/ordersystem", "localhost:5000", "mirror.internal"] {
            assert_eq!(image_registry_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "ghcr.io/ordersystem/",
            "Ghcr.io/x",
            "ghcr.io/Upper",
            "ghcr.io:port/x",
            "ghcr.io/x:1.0",
        ] {
            assert!(image_registry_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn names_of_letters_and_digits_become_readable_identifiers() {
        assert_eq!(
            pg_identifier("shop", "demo1", Service::Invoicing),
            "os_shop_demo1_invoicing"
        );
    }

    #[test]
    fn a_dash_moves_no_boundary_between_namespace_and_name() {
        let a = pg_identifier("team-a", "shop", Service::Invoicing);
        let b = pg_identifier("team", "a-shop", Service::Invoicing);
        assert_ne!(a, b);
        assert!(
            a.starts_with("os_team_a_shop_") && a.ends_with("_invoicing"),
            "{a}"
        );
        assert_eq!(pg_identifier_problem(&a), None);
    }

    #[test]
    fn long_names_are_cut_to_63_bytes_and_stay_distinct() {
        let ns = "n".repeat(63);
        let a = pg_identifier(&ns, &"a".repeat(53), Service::Invoicing);
        let b = pg_identifier(&ns, &"a".repeat(52), Service::Invoicing);
        assert_eq!(a.len(), 63);
        assert_ne!(a, b, "different names must not collide after cutting");
        assert_eq!(pg_identifier_problem(&a), None);
    }

    #[test]
    fn ownership_comments_of_this_and_earlier_releases_are_read() {
        let comment = owner_comment("team-a", "shop", "u-1");
        assert_eq!(
            RecordedOwner::parse(Some(&comment)),
            RecordedOwner::Resource {
                owner: "team-a/shop".into(),
                uid: "u-1".into()
            }
        );
        assert_eq!(
            RecordedOwner::parse(Some("ordersystem.io/owner-uid=u-0")),
            RecordedOwner::Uid("u-0".into())
        );
        assert_eq!(RecordedOwner::parse(Some("made by hand")), RecordedOwner::Unknown);
        assert_eq!(RecordedOwner::parse(None), RecordedOwner::Unknown);
    }

    #[test]
    fn reserved_and_malformed_identifiers_are_refused() {
        assert!(pg_identifier_problem("pg_shop").is_some());
        assert!(pg_identifier_problem("public").is_some());
        assert!(pg_identifier_problem("1abc").is_some());
        assert!(pg_identifier_problem("a-b").is_some());
        assert!(pg_identifier_problem(&"a".repeat(64)).is_some());
        assert_eq!(pg_identifier_problem("os_a_b_order"), None);
    }

    #[test]
    fn the_alternate_login_stays_within_63_bytes_and_distinct() {
        assert_eq!(
            alternate_login("os_shop_shop_invoicing"),
            "os_shop_shop_invoicing_b"
        );
        let long = pg_identifier(&"n".repeat(63), "shop", Service::Invoicing);
        let alternate = alternate_login(&long);
        assert_eq!(alternate.len(), 63);
        assert_ne!(alternate, long);
        assert_eq!(pg_identifier_problem(&alternate), None);
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}

/// Names built from namespace and name must never let two resources share a schema, a role, a consumer
/// group or a Kafka user: each is shown injective over namespaces (DNS labels) and names (DNS subdomains).
#[cfg(test)]
mod injective {
    use proptest::prelude::*;

    use super::*;

    /// A DNS-1123 label, as a namespace: no `.`, and here dashes often, where collisions hide.
    const LABEL: &str = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?";
    /// A DNS-1123 subdomain of up to 53 characters, as an `OrderSystem` name.
    const SUBDOMAIN: &str = "[a-z0-9]([a-z0-9.-]{0,51}[a-z0-9])?";

    fn service() -> impl Strategy<Value = Service> {
        prop::sample::select(Service::ALL.to_vec())
    }

    proptest! {
        /// The same characters split at another `-` between namespace and name (`team-a`/`shop`,
        /// `team`/`a-shop`) give another schema name, valid and within 63 bytes.
        #[test]
        fn moving_the_boundary_between_namespace_and_name_changes_the_schema_name(
            parts in prop::collection::vec("[a-z0-9]{1,8}", 2..6),
            service in service(),
        ) {
            let mut seen = BTreeMap::new();
            for split in 1..parts.len() {
                let (namespace, name) = (parts[..split].join("-"), parts[split..].join("-"));
                let ident = pg_identifier(&namespace, &name, service);
                prop_assert_eq!(pg_identifier_problem(&ident), None);
                if let Some(other) = seen.insert(ident.clone(), (namespace.clone(), name.clone())) {
                    prop_assert!(false, "{:?} and {:?} both give {}", other, (namespace, name), ident);
                }
            }
        }

        /// Two different resources or services never share a schema name.
        #[test]
        fn schema_names_of_different_resources_differ(
            a in (LABEL, SUBDOMAIN, service()),
            b in (LABEL, SUBDOMAIN, service()),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(pg_identifier(&a.0, &a.1, a.2), pg_identifier(&b.0, &b.1, b.2));
        }

        /// Consumer group ids and Kafka users read back as the namespace (up to the first `.`, which a
        /// namespace cannot contain), the service (after the last `.`, which no service name contains)
        /// and the name between: so they are injective, and two resources never share either.
        #[test]
        fn group_ids_and_kafka_users_read_back_as_namespace_name_and_service(
            namespace in LABEL,
            name in SUBDOMAIN,
            service in service(),
        ) {
            for id in [group_id(&namespace, &name, service), kafka_user(&namespace, &name, service)] {
                let (read_namespace, rest) = id.split_once('.').expect("a namespace part");
                let (read_name, read_service) = rest.rsplit_once('.').expect("a service part");
                prop_assert_eq!(read_namespace, namespace.as_str());
                prop_assert_eq!(read_name, name.as_str());
                prop_assert_eq!(read_service, service.as_str());
            }
        }
    }
}
