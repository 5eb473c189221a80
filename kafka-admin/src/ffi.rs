//! The librdkafka plumbing every wrapped call shares: owned handles that free themselves, one request's
//! queue and options, sending a request and waiting for its event, and reading a result's items and
//! errors.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;

use crate::admin::FfiError;

/// A librdkafka object and its destructor.
pub(crate) struct Owned<T> {
    pub(crate) ptr: *mut T,
    pub(crate) destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` was returned by the librdkafka constructor matching `destroy`, is non-null and
            // is destroyed exactly once, here.
            unsafe { (self.destroy)(self.ptr) }
        }
    }
}

/// Creates a result queue and admin options with the request timeout, for one call through `client`.
pub(crate) fn queue_and_options<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> (Owned<rd::rd_kafka_queue_t>, Owned<rd::rd_kafka_AdminOptions_t>) {
    let rk = client.native_ptr();
    // SAFETY: `rk` is the live handle owned by `client`, which outlives this call.
    let queue = unsafe { rd::rd_kafka_queue_new(rk) };
    // SAFETY: as above; ADMIN_OP_ANY options are accepted by every admin call.
    let options =
        unsafe { rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ANY) };
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `options` is valid; `errstr` is a writable buffer of the given size. The only failure is an
    // out-of-range timeout, which `timeout_ms` cannot be, so the result is ignored.
    unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr.as_mut_ptr(), errstr.len())
    };
    (
        Owned {
            ptr: queue,
            destroy: rd::rd_kafka_queue_destroy,
        },
        Owned {
            ptr: options,
            destroy: rd::rd_kafka_AdminOptions_destroy,
        },
    )
}

/// Waits for the one result event of a call on its private queue; checks the request-level error.
pub(crate) fn wait(
    queue: &Owned<rd::rd_kafka_queue_t>,
    op: &'static str,
    timeout: Duration,
) -> Result<Owned<rd::rd_kafka_event_t>, FfiError> {
    // Poll a little longer than the request timeout: librdkafka answers a timed-out request with an event.
    let poll_ms = i32::try_from((timeout + Duration::from_secs(5)).as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `queue` is a live queue created for this call.
    let event = unsafe { rd::rd_kafka_queue_poll(queue.ptr, poll_ms) };
    if event.is_null() {
        return Err(FfiError::Timeout { op, timeout });
    }
    let event = Owned {
        ptr: event,
        destroy: rd::rd_kafka_event_destroy,
    };
    // SAFETY: `event` is a live event.
    let code = unsafe { rd::rd_kafka_event_error(event.ptr) };
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: the string is owned by the event, which is alive while we copy it.
        let message = unsafe { cstr(rd::rd_kafka_event_error_string(event.ptr)) };
        return Err(FfiError::Broker {
            op,
            code: code.into(),
            message,
        });
    }
    Ok(event)
}

/// Sends one Admin API request carrying `items` through `call` and waits for its result event. The
/// request's queue and options live for this call only: the event, once polled, is ours alone.
pub(crate) fn admin_call<C: ClientContext, P>(
    client: &Client<C>,
    op: &'static str,
    timeout: Duration,
    items: &mut [P],
    call: unsafe extern "C" fn(
        *mut rd::rd_kafka_t,
        *mut P,
        usize,
        *const rd::rd_kafka_AdminOptions_t,
        *mut rd::rd_kafka_queue_t,
    ),
) -> Result<Owned<rd::rd_kafka_event_t>, FfiError> {
    let (queue, options) = queue_and_options(client, timeout);
    // SAFETY: the client, the options and the queue are live; `items` holds `items.len()` valid values of
    // the kind `call` takes (handles or C strings the caller owns and keeps alive), which librdkafka copies.
    unsafe {
        call(
            client.native_ptr(),
            items.as_mut_ptr(),
            items.len(),
            options.ptr,
            queue.ptr,
        )
    };
    wait(&queue, op, timeout)
}

/// Copies a C string owned by librdkafka.
///
/// # Safety
/// `s` is null or a valid NUL-terminated string that lives for the duration of the call.
pub(crate) unsafe fn cstr(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// The items of an admin call's result: `result_of` reads the call's result out of `event`, `items_of`
/// its array (null when there are none). The items are owned by the event and live as long as it does.
///
/// # Safety
/// `event` is the result event of the call `result_of` and `items_of` belong to.
pub(crate) unsafe fn event_items<R, T>(
    event: &Owned<rd::rd_kafka_event_t>,
    result_of: unsafe extern "C" fn(*mut rd::rd_kafka_event_t) -> *const R,
    items_of: unsafe extern "C" fn(*const R, *mut usize) -> *mut *const T,
) -> &[*const T] {
    let mut count = 0usize;
    // SAFETY: guaranteed by the caller.
    let items = unsafe { items_of(result_of(event.ptr), &mut count) };
    if items.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller: the array holds `count` items owned by the event.
    unsafe { std::slice::from_raw_parts(items, count) }
}

/// The code and message of one item's error object; `None` for none (librdkafka may hand out an error
/// object whose code is `NO_ERROR`).
///
/// # Safety
/// `error` is null or a live error owned by a live result event.
pub(crate) unsafe fn item_error(error: *const rd::rd_kafka_error_t) -> Option<(RDKafkaErrorCode, String)> {
    if error.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let (code, message) = unsafe {
        (
            rd::rd_kafka_error_code(error),
            cstr(rd::rd_kafka_error_string(error)),
        )
    };
    (code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| (code.into(), message))
}

/// The per-item outcome of a call: `Ok` when no item failed, else one error with the first failure's
/// code and every failure's message, so none is hidden behind the first.
pub(crate) fn check_items(
    op: &'static str,
    errors: impl IntoIterator<Item = Option<(RDKafkaErrorCode, String)>>,
) -> Result<(), FfiError> {
    let failures: Vec<(RDKafkaErrorCode, String)> = errors.into_iter().flatten().collect();
    let Some((code, _)) = failures.first() else {
        return Ok(());
    };
    Err(FfiError::Broker {
        op,
        code: *code,
        message: failures
            .iter()
            .map(|(_, message)| message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    })
}
