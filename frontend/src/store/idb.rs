//! A minimal IndexedDB wrapper over web-sys: open a database (creating its object stores
//! on upgrade), and put, read all, and delete string values by string key; for binary
//! data, put bytes, read the bytes under a key prefix, and replace some keys by one in
//! one transaction.
//!
//! Every IndexedDB request is turned into a `js_sys::Promise` and awaited with
//! wasm-bindgen-futures. Writes resolve when their transaction *completes*, i.e. when
//! the data is committed, not merely queued.
//!
//! Invariants: the event handlers of a request live exactly as long as the future that
//! awaits it (they are removed and dropped when it resolves), and every store holds
//! out-of-line string keys with values that are either strings or bytes
//! (`Uint8Array`), never both in one store.

use std::fmt;

use js_sys::{Array, Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode};

/// Why an IndexedDB operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdbError(pub String);

impl fmt::Display for IdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdbError {}

impl IdbError {
    fn from_js(context: &str, value: &JsValue) -> IdbError {
        let detail = value
            .dyn_ref::<web_sys::DomException>()
            .map(|exception| format!("{}: {}", exception.name(), exception.message()))
            .or_else(|| {
                value
                    .dyn_ref::<js_sys::Error>()
                    .map(|error| String::from(error.message()))
            })
            .or_else(|| value.as_string())
            .unwrap_or_else(|| "unknown error".to_owned());
        IdbError(format!("{context}: {detail}"))
    }
}

/// An open IndexedDB database.
#[derive(Debug, Clone)]
pub struct Database {
    db: IdbDatabase,
}

impl Database {
    /// Opens (creating or upgrading) database `name` at `version`, making sure every
    /// store in `stores` exists. Fails when IndexedDB is unavailable (some private
    /// browsing modes, sandboxed frames) or another tab blocks the upgrade.
    pub async fn open(name: &str, version: u32, stores: &[&str]) -> Result<Database, IdbError> {
        let window = web_sys::window().ok_or_else(|| IdbError("no window".to_owned()))?;
        let factory = window
            .indexed_db()
            .map_err(|error| IdbError::from_js("IndexedDB is not allowed here", &error))?
            .ok_or_else(|| IdbError("this browser has no IndexedDB".to_owned()))?;
        let request: IdbOpenDbRequest = factory
            .open_with_u32(name, version)
            .map_err(|error| IdbError::from_js("could not open the database", &error))?;

        let wanted: Vec<String> = stores.iter().map(|store| (*store).to_owned()).collect();
        let upgrade_request = request.clone();
        let on_upgrade = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
            let Ok(result) = upgrade_request.result() else {
                return;
            };
            let db: IdbDatabase = result.unchecked_into();
            let existing = db.object_store_names();
            for store in &wanted {
                if !existing.contains(store) {
                    // An error here aborts the upgrade, which fails the open request.
                    let _ = db.create_object_store(store);
                }
            }
        });
        request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let blocked_request = request.clone();
        let result = await_request(&request, move |reject: &Function| {
            // Another tab holds an older version open: fail rather than wait forever.
            let reject = reject.clone();
            let on_blocked = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
                let _ = reject.call1(
                    &JsValue::UNDEFINED,
                    &JsValue::from_str("another tab is upgrading the database"),
                );
            });
            blocked_request.set_onblocked(Some(on_blocked.as_ref().unchecked_ref()));
            Some(on_blocked)
        })
        .await;
        request.set_onupgradeneeded(None);
        request.set_onblocked(None);
        drop(on_upgrade);

        let db: IdbDatabase = result
            .map_err(|error| IdbError::from_js("could not open the database", &error))?
            .unchecked_into();
        // Let a newer version of this app in another tab upgrade the schema: close
        // instead of blocking it. Later operations then fail and the caller falls back.
        let closing = db.clone();
        let on_version_change = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
            closing.close();
        });
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        on_version_change.forget();
        Ok(Database { db })
    }

    /// Stores `value` under `key` in `store`, replacing any previous value; resolves once
    /// committed.
    pub async fn put(&self, store: &str, key: &str, value: &str) -> Result<(), IdbError> {
        let transaction = self.transaction(store, IdbTransactionMode::Readwrite)?;
        transaction
            .object_store(store)
            .and_then(|object_store| {
                object_store.put_with_key(&JsValue::from_str(value), &JsValue::from_str(key))
            })
            .map_err(|error| IdbError::from_js("could not write", &error))?;
        await_transaction(&transaction).await
    }

    /// Deletes the value under `key` in `store` (nothing happens when there is none);
    /// resolves once committed.
    pub async fn delete(&self, store: &str, key: &str) -> Result<(), IdbError> {
        let transaction = self.transaction(store, IdbTransactionMode::Readwrite)?;
        transaction
            .object_store(store)
            .and_then(|object_store| object_store.delete(&JsValue::from_str(key)))
            .map_err(|error| IdbError::from_js("could not delete", &error))?;
        await_transaction(&transaction).await
    }

    /// Every string value in `store`, in key order. Values that are not strings are
    /// skipped.
    pub async fn get_all(&self, store: &str) -> Result<Vec<String>, IdbError> {
        let transaction = self.transaction(store, IdbTransactionMode::Readonly)?;
        let request = transaction
            .object_store(store)
            .and_then(|object_store| object_store.get_all())
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        let values = await_request(&request, |_| None::<()>)
            .await
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        Ok(values
            .dyn_into::<Array>()
            .map(|array| array.iter().filter_map(|value| value.as_string()).collect())
            .unwrap_or_default())
    }

    /// Stores `bytes` under `key` in `store`, replacing any previous value; resolves once
    /// committed.
    pub async fn put_bytes(&self, store: &str, key: &str, bytes: &[u8]) -> Result<(), IdbError> {
        let transaction = self.transaction(store, IdbTransactionMode::Readwrite)?;
        transaction
            .object_store(store)
            .and_then(|object_store| {
                object_store.put_with_key(&Uint8Array::from(bytes), &JsValue::from_str(key))
            })
            .map_err(|error| IdbError::from_js("could not write", &error))?;
        await_transaction(&transaction).await
    }

    /// Every `(key, bytes)` in `store` whose key starts with `prefix`, in key order.
    /// Values that are not bytes are skipped.
    pub async fn get_bytes_with_prefix(
        &self,
        store: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, IdbError> {
        let range = prefix_range(prefix)?;
        let transaction = self.transaction(store, IdbTransactionMode::Readonly)?;
        let object_store = transaction
            .object_store(store)
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        // Both requests are made before either is awaited: a transaction with no
        // request pending may commit as soon as control returns to the browser.
        let keys_request = object_store
            .get_all_keys_with_key(&range)
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        let values_request = object_store
            .get_all_with_key(&range)
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        let keys = await_request(&keys_request, |_| None::<()>)
            .await
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        let values = await_request(&values_request, |_| None::<()>)
            .await
            .map_err(|error| IdbError::from_js("could not read", &error))?;
        let (Ok(keys), Ok(values)) = (keys.dyn_into::<Array>(), values.dyn_into::<Array>()) else {
            return Ok(Vec::new());
        };
        Ok(keys
            .iter()
            .zip(values.iter())
            .filter_map(|(key, value)| {
                let bytes = value.dyn_into::<Uint8Array>().ok()?.to_vec();
                Some((key.as_string()?, bytes))
            })
            .collect())
    }

    /// In one transaction: deletes `deletes` from `store` and stores `bytes` under `key`;
    /// resolves once committed (all or nothing).
    pub async fn replace_bytes(
        &self,
        store: &str,
        deletes: &[String],
        key: &str,
        bytes: &[u8],
    ) -> Result<(), IdbError> {
        let transaction = self.transaction(store, IdbTransactionMode::Readwrite)?;
        let object_store = transaction
            .object_store(store)
            .map_err(|error| IdbError::from_js("could not write", &error))?;
        for old in deletes {
            object_store
                .delete(&JsValue::from_str(old))
                .map_err(|error| IdbError::from_js("could not delete", &error))?;
        }
        object_store
            .put_with_key(&Uint8Array::from(bytes), &JsValue::from_str(key))
            .map_err(|error| IdbError::from_js("could not write", &error))?;
        await_transaction(&transaction).await
    }

    fn transaction(
        &self,
        store: &str,
        mode: IdbTransactionMode,
    ) -> Result<IdbTransaction, IdbError> {
        self.db
            .transaction_with_str_and_mode(store, mode)
            .map_err(|error| IdbError::from_js("could not start a transaction", &error))
    }
}

/// The string keys that start with `prefix`: `IDBKeyRange.bound(prefix, prefix + U+FFFF)`.
/// (Through `Reflect`, as web-sys' `IdbKeyRange` binding is not part of this build.)
fn prefix_range(prefix: &str) -> Result<JsValue, IdbError> {
    let constructor = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("IDBKeyRange"))
        .map_err(|error| IdbError::from_js("this browser has no IDBKeyRange", &error))?;
    let bound: Function = js_sys::Reflect::get(&constructor, &JsValue::from_str("bound"))
        .and_then(|bound| bound.dyn_into::<Function>())
        .map_err(|error| IdbError::from_js("this browser has no IDBKeyRange.bound", &error))?;
    bound
        .call2(
            &constructor,
            &JsValue::from_str(prefix),
            &JsValue::from_str(&format!("{prefix}\u{ffff}")),
        )
        .map_err(|error| IdbError::from_js("could not make a key range", &error))
}

/// Awaits an IndexedDB request's `success` (its `result`) or `error`. `extra` may install
/// more rejecting handlers (such as `blocked`); what it returns is kept alive until the
/// request settles.
async fn await_request<K>(
    request: &IdbRequest,
    extra: impl FnOnce(&Function) -> Option<K>,
) -> Result<JsValue, JsValue> {
    let mut kept = None;
    let mut extra = Some(extra);
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let success_request = request.clone();
        let on_success = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
            let result = success_request.result().unwrap_or(JsValue::UNDEFINED);
            let _ = resolve.call1(&JsValue::UNDEFINED, &result);
        });
        let error_request = request.clone();
        let error_reject = reject.clone();
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            // Handled here, by the awaiting future; it does not also need to reach the
            // database's error handler.
            event.prevent_default();
            let error = error_request
                .error()
                .ok()
                .flatten()
                .map(JsValue::from)
                .unwrap_or_else(|| JsValue::from_str("request failed"));
            let _ = error_reject.call1(&JsValue::UNDEFINED, &error);
        });
        request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
        request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let more = extra.take().and_then(|extra| extra(&reject));
        kept = Some((on_success, on_error, more));
    });
    let result = JsFuture::from(promise).await;
    request.set_onsuccess(None);
    request.set_onerror(None);
    drop(kept);
    result
}

/// Awaits a transaction's `complete`, or fails on its `error` or `abort`.
async fn await_transaction(transaction: &IdbTransaction) -> Result<(), IdbError> {
    let mut kept = None;
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let on_complete = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        });
        let failed = transaction.clone();
        let on_abort = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
            let error = failed
                .error()
                .map(JsValue::from)
                .unwrap_or_else(|| JsValue::from_str("transaction aborted"));
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        });
        transaction.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
        // An error event is always followed by abort; abort alone also covers
        // `transaction.abort()` and quota failures at commit.
        transaction.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
        kept = Some((on_complete, on_abort));
    });
    let result = JsFuture::from(promise).await;
    transaction.set_oncomplete(None);
    transaction.set_onabort(None);
    drop(kept);
    result
        .map(|_| ())
        .map_err(|error| IdbError::from_js("the write did not commit", &error))
}
