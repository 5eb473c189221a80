//! Kafka identities through librdkafka's C API, which rdkafka's safe `AdminClient` does not wrap:
//! `AlterUserScramCredentials` (KIP-554) to create or update a SCRAM user, and `CreateAcls` to grant it
//! what it may do. Same rules as `admin_ffi`: synchronous calls bounded by their timeout (callers use
//! `spawn_blocking`), every librdkafka object owned by a guard that frees it, no pointer escapes.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;

use super::admin_ffi::{Admin, FfiError, Owned, cstr, queue_and_options, wait};

/// PBKDF2 iterations of the stored SCRAM credential: Kafka's documented default (min 4096).
const SCRAM_ITERATIONS: i32 = 8192;

/// SCRAM hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    let mechanism = match mechanism {
        ScramMechanism::Sha256 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256,
        ScramMechanism::Sha512 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512,
    };
    // SAFETY: `name` is a valid C string and `password` a byte slice of the given length; both are copied.
    // A null salt of size 0 asks librdkafka for a random salt.
    let upsertion = unsafe {
        rd::rd_kafka_UserScramCredentialUpsertion_new(
            name.as_ptr(),
            mechanism,
            SCRAM_ITERATIONS,
            password.as_ptr(),
            password.len(),
            ptr::null(),
            0,
        )
    };
    let upsertion = Owned {
        ptr: upsertion,
        destroy: rd::rd_kafka_UserScramCredentialAlteration_destroy,
    };
    let (queue, options) = queue_and_options(admin, timeout);
    let mut alterations = [upsertion.ptr];
    // SAFETY: all handles are live; librdkafka copies the alterations, which we still destroy ourselves.
    unsafe {
        rd::rd_kafka_AlterUserScramCredentials(
            admin.inner().native_ptr(),
            alterations.as_mut_ptr(),
            alterations.len(),
            options.ptr,
            queue.ptr,
        )
    };
    let event = wait(&queue, OP, timeout)?;
    // SAFETY: the event is an AlterUserScramCredentials result from this call's queue; the responses and
    // their errors are owned by the event, alive while read.
    unsafe {
        let result = rd::rd_kafka_event_AlterUserScramCredentials_result(event.ptr);
        let mut count = 0usize;
        let responses = rd::rd_kafka_AlterUserScramCredentials_result_responses(result, &mut count);
        for i in 0..count {
            let error = rd::rd_kafka_AlterUserScramCredentials_result_response_error(*responses.add(i));
            check(error, OP)?;
        }
    }
    Ok(())
}

/// Creates ALLOW bindings; a binding that already exists is left as it is (CreateAcls is idempotent).
pub fn create_acls(admin: &Admin, acls: &[Acl], timeout: Duration) -> Result<(), FfiError> {
    const OP: &str = "CreateAcls";
    let mut bindings = Vec::with_capacity(acls.len());
    for acl in acls {
        bindings.push(new_binding(acl)?);
    }
    let (queue, options) = queue_and_options(admin, timeout);
    let mut pointers: Vec<_> = bindings.iter().map(|b| b.ptr).collect();
    // SAFETY: all handles are live; librdkafka copies the bindings, which we still destroy ourselves.
    unsafe {
        rd::rd_kafka_CreateAcls(
            admin.inner().native_ptr(),
            pointers.as_mut_ptr(),
            pointers.len(),
            options.ptr,
            queue.ptr,
        )
    };
    let event = wait(&queue, OP, timeout)?;
    // SAFETY: the event is a CreateAcls result from this call's queue; the results and their errors are
    // owned by the event, alive while read.
    unsafe {
        let result = rd::rd_kafka_event_CreateAcls_result(event.ptr);
        let mut count = 0usize;
        let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut count);
        for i in 0..count {
            check(rd::rd_kafka_acl_result_error(*results.add(i)), OP)?;
        }
    }
    Ok(())
}

fn new_binding(acl: &Acl) -> Result<Owned<rd::rd_kafka_AclBinding_t>, FfiError> {
    const OP: &str = "CreateAcls";
    let (restype, name) = match &acl.resource {
        AclResource::Topic(name) => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name),
        AclResource::Group(name) => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP, name),
    };
    let operation = match acl.operation {
        AclOperation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
        AclOperation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
    };
    let c = |s: &str| CString::new(s).map_err(|source| FfiError::Nul { op: OP, source });
    let (name, principal, host) = (c(name)?, c(&acl.principal)?, c("*")?);
    let mut errstr = [0 as std::ffi::c_char; 512];
    // SAFETY: every string is a valid C string and `errstr` a writable buffer of the given size; the
    // binding copies the strings.
    let binding = unsafe {
        rd::rd_kafka_AclBinding_new(
            restype,
            name.as_ptr(),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            principal.as_ptr(),
            host.as_ptr(),
            operation,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if binding.is_null() {
        return Err(FfiError::Broker {
            op: OP,
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

/// A per-item error of a result; librdkafka may hand out an error object whose code is `NO_ERROR`.
///
/// # Safety
/// `error` is null or a live error owned by a live result event.
unsafe fn check(error: *const rd::rd_kafka_error_t, op: &'static str) -> Result<(), FfiError> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: guaranteed by the caller.
    let (code, message) = unsafe {
        (
            rd::rd_kafka_error_code(error),
            cstr(rd::rd_kafka_error_string(error)),
        )
    };
    if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    Err(FfiError::Broker {
        op,
        code: code.into(),
        message,
    })
}
