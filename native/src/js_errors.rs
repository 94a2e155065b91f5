//! Turns SkError into JavaScript Errors whose `code` is the catalogue string ('SK_IO', 'SK_DISK_FULL', ...).
//! It must never let an error reach JS through napi's Error<Status>, which would say 'GenericFailure'.

use napi::bindgen_prelude::{JsObjectValue, Object, Unknown};
use napi::{Env, JsError, JsValue};

use crate::io_errors::SkError;
use crate::js_stop::JsStop;

/// For functions that throw synchronously on the JS thread.
pub fn sync_error(err: SkError) -> napi::Error<String> {
    napi::Error::new(err.code.as_str().to_string(), err.message)
}

/// For promise rejections from an AsyncTask's `resolve`: builds the JS Error object here, on the JS
/// thread, so the rejection keeps our `code` (and, for SK_WAL_INVALID, a `stop` property).
pub fn async_error(env: &Env, err: SkError) -> napi::Error {
    napi::Error::from(error_object(env, err))
}

/// The JS Error object itself (with `code`, and `stop` for SK_WAL_INVALID), e.g. to reject a promise with.
pub fn error_object<'env>(env: &Env, err: SkError) -> Unknown<'env> {
    let stop = err.wal_stop.clone();
    let unknown = JsError::from(sync_error(err)).into_unknown(*env);
    if let Some(stop) = stop {
        if let Ok(mut object) = unknown.coerce_to_object() {
            let _ = Object::set_named_property(&mut object, "stop", JsStop::from(&stop));
        }
    }
    unknown
}
