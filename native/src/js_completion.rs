//! Settles JS promises from a foreign thread: one N-API threadsafe function per owner (a SegmentFile)
//! carries completions (boxed closures) to the JS thread, where they resolve or reject a napi_deferred
//! and drop the JS references the operation held. It keeps the event loop alive only while operations
//! are in flight. It must never call the threadsafe function after Node finalized it (environment
//! teardown), nor run a completion, nor drop JS references, off the JS thread.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{ToNapiValue, Unknown};
use napi::{sys, Env, JsValue};

use crate::io_errors::{ErrorCode, SkError};
use crate::js_errors::error_object;

/// Runs on the JS thread with the environment.
pub type Completion = Box<dyn FnOnce(Env) + Send>;

struct Tsfn(sys::napi_threadsafe_function);
// The handle may be called and released from any thread: that is what a threadsafe function is for.
unsafe impl Send for Tsfn {}

struct Shared {
    /// None once Node has finalized the threadsafe function (or we released it).
    tsfn: Mutex<Option<Tsfn>>,
    /// Operations begun and not yet completed. Only changed on the JS thread.
    in_flight: AtomicUsize,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Option<Tsfn>> {
    shared.tsfn.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared as Arc<Completer> by its owner and every operation in flight; dropping the last one releases
/// the threadsafe function.
pub struct Completer {
    shared: Arc<Shared>,
}

/// The deferred half of a promise created on the JS thread; settled exactly once, on the JS thread.
pub struct Deferred(sys::napi_deferred);
// Only ever used on the JS thread; it merely travels through the worker.
unsafe impl Send for Deferred {}

impl Completer {
    /// Creates the (unreferenced) threadsafe function. JS thread only.
    pub fn new(env: &Env, name: &str) -> napi::Result<Arc<Completer>> {
        let shared = Arc::new(Shared { tsfn: Mutex::new(None), in_flight: AtomicUsize::new(0) });
        let resource_name = env.create_string(name)?;
        let mut tsfn = ptr::null_mut();
        // The finalizer owns one strong count; `context` borrows the same allocation (it outlives the tsfn).
        let finalize_data = Arc::into_raw(Arc::clone(&shared)) as *mut c_void;
        let status = unsafe {
            sys::napi_create_threadsafe_function(
                env.raw(),
                ptr::null_mut(),
                ptr::null_mut(),
                resource_name.raw(),
                0,
                1,
                finalize_data,
                Some(finalize),
                Arc::as_ptr(&shared) as *mut c_void,
                Some(call_js),
                &mut tsfn,
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: not handed to Node, so reclaim the finalizer's count here.
            drop(unsafe { Arc::from_raw(finalize_data as *const Shared) });
            return Err(napi::Error::new(napi::Status::from(status), "napi_create_threadsafe_function failed".to_string()));
        }
        unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) };
        *lock(&shared) = Some(Tsfn(tsfn));
        Ok(Arc::new(Completer { shared }))
    }

    /// Marks one operation in flight (keeps the event loop alive) and creates its promise. JS thread only.
    pub fn begin<'env>(&self, env: &'env Env) -> napi::Result<(Deferred, Unknown<'env>)> {
        let mut deferred = ptr::null_mut();
        let mut promise = ptr::null_mut();
        let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(napi::Status::from(status), "napi_create_promise failed".to_string()));
        }
        if self.shared.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Some(tsfn) = lock(&self.shared).as_ref() {
                unsafe { sys::napi_ref_threadsafe_function(env.raw(), tsfn.0) };
            }
        }
        // SAFETY: a fresh promise value in the current handle scope.
        Ok((Deferred(deferred), unsafe { Unknown::from_raw_unchecked(env.raw(), promise) }))
    }

    /// Sends `completion` to the JS thread. Any thread. Each `begin` must be followed by exactly one
    /// `complete`. If Node is tearing the environment down, the completion is leaked unrun.
    pub fn complete(&self, completion: Completion) {
        let data = Box::into_raw(Box::new(completion)) as *mut c_void;
        let guard = lock(&self.shared);
        let status = match guard.as_ref() {
            // SAFETY: the slot holds the handle only while Node has not finalized it; the lock keeps the
            // finalizer from running meanwhile.
            Some(tsfn) => unsafe { sys::napi_call_threadsafe_function(tsfn.0, data, sys::ThreadsafeFunctionCallMode::nonblocking) },
            None => sys::Status::napi_closing,
        };
        drop(guard);
        if status != sys::Status::napi_ok {
            // Teardown: the promise can no longer settle. Leak the JS references rather than drop them here.
            std::mem::forget(unsafe { Box::from_raw(data as *mut Completion) });
        }
    }
}

fn finished(shared: &Shared, env: sys::napi_env) {
    if shared.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
        if let Some(tsfn) = lock(shared).as_ref() {
            unsafe { sys::napi_unref_threadsafe_function(env, tsfn.0) };
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(tsfn) = lock(&self.shared).take() {
            // SAFETY: live handle, as in `complete`. Node finalizes it once its queue is drained.
            unsafe { sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::release) };
        }
    }
}

unsafe extern "C" fn call_js(env: sys::napi_env, _js_callback: sys::napi_value, context: *mut c_void, data: *mut c_void) {
    // SAFETY: `data` came from Box::into_raw in `complete`; `context` is the Shared kept alive by the finalizer.
    let completion = unsafe { Box::from_raw(data as *mut Completion) };
    if env.is_null() {
        // Node drains the queue this way while tearing the environment down: nothing may run JS.
        std::mem::forget(completion);
        return;
    }
    // Unwinding out of this extern "C" callback would abort the process.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| completion(Env::from_raw(env))));
    let shared = unsafe { &*(context as *const Shared) };
    finished(shared, env);
}

unsafe extern "C" fn finalize(_env: sys::napi_env, finalize_data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: the strong count handed over in `Completer::new`.
    let shared = unsafe { Arc::from_raw(finalize_data as *const Shared) };
    lock(&shared).take();
}

/// Resolves `deferred` with `value`. JS thread only.
pub fn resolve<T: ToNapiValue>(env: &Env, deferred: Deferred, value: T) {
    match unsafe { T::to_napi_value(env.raw(), value) } {
        Ok(v) => unsafe {
            sys::napi_resolve_deferred(env.raw(), deferred.0, v);
        },
        Err(err) => reject(env, deferred, SkError::new(ErrorCode::Io, format!("converting the result to JS failed: {err}"))),
    }
}

/// Rejects `deferred` with our coded JS Error for `err`. JS thread only.
pub fn reject(env: &Env, deferred: Deferred, err: SkError) {
    let value = error_object(env, err);
    unsafe { sys::napi_reject_deferred(env.raw(), deferred.0, value.raw()) };
}
