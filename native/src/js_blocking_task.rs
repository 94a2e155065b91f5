//! One AsyncTask type for every blocking native operation: runs a closure on the libuv pool and turns its
//! SkResult into a resolved value or a coded rejection. JS Buffers it uses stay owned by the task, so they
//! are released on the JS thread, never dropped on a worker thread.

use napi::bindgen_prelude::{AsyncTask, Buffer, ToNapiValue, TypeName};
use napi::{Env, Task};

use crate::io_errors::SkResult;
use crate::js_errors::async_error;

type Op<T> = Box<dyn FnOnce(&[Buffer]) -> SkResult<T> + Send>;

pub struct Blocking<T> {
    op: Option<Op<T>>,
    buffers: Vec<Buffer>,
}

impl<T: ToNapiValue + TypeName + Send + 'static> Blocking<T> {
    pub fn run(op: impl FnOnce() -> SkResult<T> + Send + 'static) -> AsyncTask<Blocking<T>> {
        AsyncTask::new(Blocking { op: Some(Box::new(move |_| op())), buffers: Vec::new() })
    }

    /// `op` sees the bytes of `buffers` on the worker thread; the task keeps the references.
    pub fn with_buffers(buffers: Vec<Buffer>, op: impl FnOnce(&[Buffer]) -> SkResult<T> + Send + 'static) -> AsyncTask<Blocking<T>> {
        AsyncTask::new(Blocking { op: Some(Box::new(op)), buffers })
    }
}

impl<T: ToNapiValue + TypeName + Send + 'static> Task for Blocking<T> {
    type Output = SkResult<T>;
    type JsValue = T;

    fn compute(&mut self) -> napi::Result<SkResult<T>> {
        let op = self.op.take().expect("a blocking task computes once");
        Ok(op(&self.buffers))
    }

    fn resolve(&mut self, env: Env, output: SkResult<T>) -> napi::Result<T> {
        output.map_err(|err| async_error(&env, err))
    }
}
