//! Kafka identities through librdkafka's C API, which rdkafka's safe `AdminClient` does not wrap:
//! `DescribeUserScramCredentials` and `AlterUserScramCredentials` (KIP-554) to look at, create, update
//! and delete a SCRAM user, `CreateAcls` and `DeleteAcls` to grant it what it may do and take exactly
//! that back, and `DescribeAcls` to see what a principal holds. Same rules as `admin`: synchronous calls
//! bounded by their timeout (callers use `spawn_blocking`), every librdkafka object owned by a guard that
//! frees it, no pointer escapes.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;

use crate::admin::{Admin, FfiError};
use crate::ffi::{Owned, admin_call, check_items, cstr, event_items, item_error, queue_and_options, wait};

/// PBKDF2 iterations of the stored SCRAM credential: Kafka's documented default (min 4096).
const SCRAM_ITERATIONS: i32 = 8192;

/// SCRAM hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

/// What an ACL is about; always a literal (exact) name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclResource {
    Topic(String),
    Group(String),
}

/// Operations the services are granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclOperation {
    Read,
    Write,
}

/// One ALLOW binding for one principal from any host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub resource: AclResource,
    /// `User:<name>`.
    pub principal: String,
    pub operation: AclOperation,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// Kafka's name of the mechanism.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn raw(self) -> rd::rd_kafka_ScramMechanism_t {
        match self {
            Self::Sha256 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256,
            Self::Sha512 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512,
        }
    }
}

/// The mechanisms `user` has a SCRAM credential for; empty when the user has none.
pub fn describe_scram_user(
    admin: &Admin,
    user: &str,
    timeout: Duration,
) -> Result<Vec<ScramMechanism>, FfiError> {
    const OP: &str = "DescribeUserScramCredentials";
    let name = CString::new(user).map_err(|source| FfiError::Nul { op: OP, source })?;
    let mut users = [name.as_ptr()];
    let event = admin_call(
        admin.inner(),
        OP,
        timeout,
        &mut users,
        rd::rd_kafka_DescribeUserScramCredentials,
    )?;
    let mut mechanisms = Vec::new();
    // SAFETY: the event is a DescribeUserScramCredentials result from this call's queue; the
    // descriptions, their errors and credential infos are owned by the event, alive while read.
    unsafe {
        let descriptions = event_items(
            &event,
            rd::rd_kafka_event_DescribeUserScramCredentials_result,
            rd::rd_kafka_DescribeUserScramCredentials_result_descriptions,
        );
        for &description in descriptions {
            match item_error(rd::rd_kafka_UserScramCredentialsDescription_error(description)) {
                None => {}
                Some((RDKafkaErrorCode::ResourceNotFound, _)) => continue,
                Some((code, message)) => {
                    return Err(FfiError::Broker {
                        op: OP,
                        code,
                        message,
                    });
                }
            }
            let infos = rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo_count(description);
            for i in 0..infos {
                let info = rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo(description, i);
                let raw = rd::rd_kafka_ScramCredentialInfo_mechanism(info);
                mechanisms.extend(ScramMechanism::ALL.into_iter().find(|m| m.raw() == raw));
            }
        }
    }
    Ok(mechanisms)
}

/// Creates the SCRAM user or replaces its credential for `mechanism` (librdkafka draws a random salt).
pub fn upsert_scram_user(
    admin: &Admin,
    user: &str,
    mechanism: ScramMechanism,
    password: &str,
    timeout: Duration,
) -> Result<(), FfiError> {
    const OP: &str = "AlterUserScramCredentials";
    let name = CString::new(user).map_err(|source| FfiError::Nul { op: OP, source })?;
    // SAFETY: `name` is a valid C string and `password` a byte slice of the given length; both are copied.
    // A null salt of size 0 asks librdkafka for a random salt.
    let upsertion = unsafe {
        rd::rd_kafka_UserScramCredentialUpsertion_new(
            name.as_ptr(),
            mechanism.raw(),
            SCRAM_ITERATIONS,
            password.as_ptr(),
            password.len(),
            ptr::null(),
            0,
        )
    };
    alter_scram_credentials(admin, vec![upsertion], &[], timeout)
}

/// Deletes the user's credentials for `mechanisms`; a credential that does not exist is no error. One
/// request per mechanism: the broker applies a user's alterations all or none, so a missing credential in
/// a request of several would keep the others too.
pub fn delete_scram_credentials(
    admin: &Admin,
    user: &str,
    mechanisms: &[ScramMechanism],
    timeout: Duration,
) -> Result<(), FfiError> {
    const OP: &str = "AlterUserScramCredentials";
    let name = CString::new(user).map_err(|source| FfiError::Nul { op: OP, source })?;
    for mechanism in mechanisms {
        // SAFETY: `name` is a valid C string; it is copied.
        let deletion =
            unsafe { rd::rd_kafka_UserScramCredentialDeletion_new(name.as_ptr(), mechanism.raw()) };
        alter_scram_credentials(
            admin,
            vec![deletion],
            &[RDKafkaErrorCode::ResourceNotFound],
            timeout,
        )?;
    }
    Ok(())
}

/// Sends the alterations (taking ownership of them); per-user errors with a code in `ignore` count as
/// success.
fn alter_scram_credentials(
    admin: &Admin,
    alterations: Vec<*mut rd::rd_kafka_UserScramCredentialAlteration_t>,
    ignore: &[RDKafkaErrorCode],
    timeout: Duration,
) -> Result<(), FfiError> {
    const OP: &str = "AlterUserScramCredentials";
    let owned: Vec<_> = alterations
        .into_iter()
        .map(|ptr| Owned {
            ptr,
            destroy: rd::rd_kafka_UserScramCredentialAlteration_destroy,
        })
        .collect();
    if owned.is_empty() {
        return Ok(());
    }
    let mut pointers: Vec<_> = owned.iter().map(|a| a.ptr).collect();
    let event = admin_call(
        admin.inner(),
        OP,
        timeout,
        &mut pointers,
        rd::rd_kafka_AlterUserScramCredentials,
    )?;
    // SAFETY: the event is an AlterUserScramCredentials result from this call's queue; the responses and
    // their errors are owned by the event, alive while read.
    unsafe {
        let responses = event_items(
            &event,
            rd::rd_kafka_event_AlterUserScramCredentials_result,
            rd::rd_kafka_AlterUserScramCredentials_result_responses,
        );
        check_items(
            OP,
            responses.iter().map(|&response| {
                item_error(rd::rd_kafka_AlterUserScramCredentials_result_response_error(
                    response,
                ))
                .filter(|(code, _)| !ignore.contains(code))
            }),
        )
    }
}

/// Creates ALLOW bindings; a binding that already exists is left as it is (CreateAcls is idempotent).
pub fn create_acls(admin: &Admin, acls: &[Acl], timeout: Duration) -> Result<(), FfiError> {
    const OP: &str = "CreateAcls";
    let bindings = acls
        .iter()
        .map(|acl| new_binding(OP, rd::rd_kafka_AclBinding_new, &Pattern::exact(acl)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<_> = bindings.iter().map(|b| b.ptr).collect();
    let event = admin_call(admin.inner(), OP, timeout, &mut pointers, rd::rd_kafka_CreateAcls)?;
    // SAFETY: the event is a CreateAcls result from this call's queue; the results and their errors are
    // owned by the event, alive while read.
    unsafe {
        let results = event_items(
            &event,
            rd::rd_kafka_event_CreateAcls_result,
            rd::rd_kafka_CreateAcls_result_acls,
        );
        check_items(
            OP,
            results
                .iter()
                .map(|&result| item_error(rd::rd_kafka_acl_result_error(result))),
        )
    }
}

/// Deletes exactly these bindings: every field of each filter is given (literal name, principal, host
/// `*`, operation, ALLOW), so no other binding can match. Returns how many bindings were removed; a
/// binding already gone is no error.
pub fn delete_acls(admin: &Admin, acls: &[Acl], timeout: Duration) -> Result<usize, FfiError> {
    const OP: &str = "DeleteAcls";
    if acls.is_empty() {
        return Ok(0);
    }
    let filters = acls
        .iter()
        .map(|acl| new_binding(OP, rd::rd_kafka_AclBindingFilter_new, &Pattern::exact(acl)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<_> = filters.iter().map(|f| f.ptr).collect();
    let event = admin_call(admin.inner(), OP, timeout, &mut pointers, rd::rd_kafka_DeleteAcls)?;
    // SAFETY: the event is a DeleteAcls result from this call's queue; the responses, their errors and
    // matching bindings are owned by the event, alive while read.
    unsafe {
        let responses = event_items(
            &event,
            rd::rd_kafka_event_DeleteAcls_result,
            rd::rd_kafka_DeleteAcls_result_responses,
        );
        check_items(
            OP,
            responses
                .iter()
                .map(|&response| item_error(rd::rd_kafka_DeleteAcls_result_response_error(response))),
        )?;
        Ok(responses
            .iter()
            .map(|&response| {
                let mut matching = 0usize;
                rd::rd_kafka_DeleteAcls_result_response_matching_acls(response, &mut matching);
                matching
            })
            .sum())
    }
}

/// How many bindings of any kind the broker holds for `principal` (`User:<name>`).
pub fn count_acls(admin: &Admin, principal: &str, timeout: Duration) -> Result<usize, FfiError> {
    const OP: &str = "DescribeAcls";
    let filter = new_binding(
        OP,
        rd::rd_kafka_AclBindingFilter_new,
        &Pattern {
            restype: rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_ANY,
            name: None,
            pattern: rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
            principal: Some(principal),
            host: None,
            operation: rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            permission: rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
        },
    )?;
    let (queue, options) = queue_and_options(admin.inner(), timeout);
    // SAFETY: all handles are live; librdkafka copies the filter, which we still destroy ourselves.
    unsafe { rd::rd_kafka_DescribeAcls(admin.inner().native_ptr(), filter.ptr, options.ptr, queue.ptr) };
    let event = wait(&queue, OP, timeout)?;
    // SAFETY: the event is a DescribeAcls result from this call's queue.
    unsafe {
        Ok(event_items(
            &event,
            rd::rd_kafka_event_DescribeAcls_result,
            rd::rd_kafka_DescribeAcls_result_acls,
        )
        .len())
    }
}

/// The fields of a binding (`AclBinding_new`) or a filter (`AclBindingFilter_new`, where `None` and the
/// `ANY` values match anything).
struct Pattern<'a> {
    restype: rd::rd_kafka_ResourceType_t,
    name: Option<&'a str>,
    pattern: rd::rd_kafka_ResourcePatternType_t,
    principal: Option<&'a str>,
    host: Option<&'a str>,
    operation: rd::rd_kafka_AclOperation_t,
    permission: rd::rd_kafka_AclPermissionType_t,
}

impl<'a> Pattern<'a> {
    /// Exactly one of our ALLOW bindings: a literal resource, for one principal from any host.
    fn exact(acl: &'a Acl) -> Self {
        let (restype, name) = match &acl.resource {
            AclResource::Topic(name) => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name),
            AclResource::Group(name) => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP, name),
        };
        let operation = match acl.operation {
            AclOperation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
            AclOperation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
        };
        Self {
            restype,
            name: Some(name),
            pattern: rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            principal: Some(&acl.principal),
            host: Some("*"),
            operation,
            permission: rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
        }
    }
}

/// `rd_kafka_AclBinding_new` and `rd_kafka_AclBindingFilter_new`, which share their signature.
type NewBinding = unsafe extern "C" fn(
    rd::rd_kafka_ResourceType_t,
    *const std::ffi::c_char,
    rd::rd_kafka_ResourcePatternType_t,
    *const std::ffi::c_char,
    *const std::ffi::c_char,
    rd::rd_kafka_AclOperation_t,
    rd::rd_kafka_AclPermissionType_t,
    *mut std::ffi::c_char,
    usize,
) -> *mut rd::rd_kafka_AclBinding_t;

fn new_binding(
    op: &'static str,
    constructor: NewBinding,
    pattern: &Pattern<'_>,
) -> Result<Owned<rd::rd_kafka_AclBinding_t>, FfiError> {
    let c = |s: Option<&str>| {
        s.map(CString::new)
            .transpose()
            .map_err(|source| FfiError::Nul { op, source })
    };
    let (name, principal, host) = (c(pattern.name)?, c(pattern.principal)?, c(pattern.host)?);
    let ptr = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
    let mut errstr = [0 as std::ffi::c_char; 512];
    // SAFETY: every string is null (filters only) or a valid C string, and `errstr` a writable buffer of
    // the given size; the binding copies the strings.
    let binding = unsafe {
        constructor(
            pattern.restype,
            ptr(&name),
            pattern.pattern,
            ptr(&principal),
            ptr(&host),
            pattern.operation,
            pattern.permission,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if binding.is_null() {
        return Err(FfiError::Broker {
            op,
            code: RDKafkaErrorCode::InvalidArgument,
            // SAFETY: librdkafka wrote a NUL-terminated message into `errstr`.
            message: unsafe { cstr(errstr.as_ptr()) },
        });
    }
    Ok(Owned {
        ptr: binding,
        destroy: rd::rd_kafka_AclBinding_destroy,
    })
}
