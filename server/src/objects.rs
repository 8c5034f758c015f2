//! Object storage for the data that outgrows one disk: one URL setting
//! (`--object-store`, [`Config::object_store`](crate::Config)) opened into an
//! [`ObjectStore`] of the `object_store` crate, and a view of it under a prefix for each
//! user, so that one bucket holds them all side by side.
//!
//! ```text
//! file:///abs/path        a directory (the crate's LocalFileSystem): one machine, tests
//! s3://bucket[/prefix]    S3 or any S3-compatible server (MinIO, Ceph, R2, moto), set up
//!                         by the usual AWS_* variables: AWS_ENDPOINT, AWS_REGION,
//!                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP
//! s3://bucket?key=value&...  the same, a setting given in the URL over its variable
//!                         (`endpoint`, `region`, `allow_http`, `access_key_id`... as the
//!                         crate names them; values as written, no percent-decoding):
//!                         what tests use, as they cannot share one process's variables
//! ```
//!
//! Without the setting every user keeps its local directory. This module names no
//! system: a user picks its own prefix ([`Objects::under`]) and keeps its own layout.
//! Every `put` of the crate is atomic (a reader sees the whole object or none of it).

use std::io;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
pub use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt};

/// An opened object store and the URL it came from.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("url", &shown(&self.url))
            .finish()
    }
}

/// `url` without its settings, which may hold credentials: for messages and logs.
fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("{0:?} is not an object store: use file:///absolute/path or s3://bucket[/prefix]")]
    BadUrl(String),
    #[error("{0:?} is not a setting of S3 object storage (endpoint, region, allow_http...)")]
    UnknownSetting(String),
    #[error("cannot open the object store {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot create the object store's directory {url}: {source}")]
    Directory {
        url: String,
        #[source]
        source: io::Error,
    },
}

impl Objects {
    /// Opens `url` (see the module's doc). Nothing is read or written yet: a
    /// misconfigured bucket shows at the first request.
    pub fn open(url: &str) -> Result<Objects, ObjectsError> {
        let bad = || ObjectsError::BadUrl(shown(url).to_owned());
        let open = |source| ObjectsError::Open {
            url: shown(url).to_owned(),
            source,
        };
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad());
            }
            std::fs::create_dir_all(path).map_err(|source| ObjectsError::Directory {
                url: url.to_owned(),
                source,
            })?;
            Arc::new(LocalFileSystem::new_with_prefix(path).map_err(open)?)
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (rest, settings) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad());
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for setting in settings.split('&').filter(|s| !s.is_empty()) {
                let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
                let key: AmazonS3ConfigKey = key
                    .parse()
                    .map_err(|_| ObjectsError::UnknownSetting(key.to_owned()))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder.build().map_err(open)?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        } else {
            return Err(bad());
        };
        Ok(Objects {
            store,
            url: url.to_owned(),
        })
    }

    /// An empty store in memory (tests).
    pub fn in_memory() -> Objects {
        Objects {
            store: Arc::new(InMemory::new()),
            url: "memory://".to_owned(),
        }
    }

    /// The same store through a client of its own (its own connections), for a user
    /// that reaches it from a runtime of its own: a connection belongs to the runtime
    /// that opened it. The in-memory store is shared as it is.
    pub fn own_client(&self) -> Result<Objects, ObjectsError> {
        if self.url.starts_with("memory:") {
            return Ok(self.clone());
        }
        Objects::open(&self.url)
    }

    /// The store's objects whose keys start with `prefix/`, keyed without it.
    pub fn under(&self, prefix: &str) -> Arc<dyn ObjectStore> {
        Arc::new(PrefixStore::new(self.store.clone(), prefix))
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// An object store's error as an I/O error (`NotFound` stays `NotFound`).
pub fn io_error(err: object_store::Error) -> io::Error {
    io::Error::from(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_open_or_are_refused() {
        for bad in [
            "",
            "/tmp/x",
            "file://relative",
            "s3://",
            "s3:///prefix",
            "gs://b",
        ] {
            assert!(
                matches!(Objects::open(bad), Err(ObjectsError::BadUrl(_))),
                "{bad:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        assert_eq!(Objects::open(&url).unwrap().url(), url);
        assert!(dir.path().join("objects").is_dir());
        // Credentials and endpoint come from the environment; building needs none.
        assert!(Objects::open("s3://bucket/some/prefix/").is_ok());
        assert!(Objects::open("s3://bucket/p?endpoint=http://127.0.0.1:9&allow_http=true").is_ok());
        // Credentials in the URL stay out of messages.
        let with_secret =
            Objects::open("s3://b/p?access_key_id=me&secret_access_key=hush").unwrap();
        assert!(!format!("{with_secret:?}").contains("hush"));
        let refused = Objects::open("s3://b/p?secret_access_key=hush").unwrap_err();
        assert!(!refused.to_string().contains("hush"), "{refused}");
        assert!(matches!(
            Objects::open("s3://bucket?colour=blue"),
            Err(ObjectsError::UnknownSetting(key)) if key == "colour"
        ));
    }

    #[tokio::test]
    async fn views_under_prefixes_do_not_see_each_other() {
        let objects = Objects::in_memory();
        let a = objects.under("a");
        let b = objects.under("b");
        let key = ObjectPath::from("x");
        a.put(&key, b"in a".to_vec().into()).await.unwrap();
        assert_eq!(
            a.get(&key).await.unwrap().bytes().await.unwrap().as_ref(),
            b"in a"
        );
        assert_eq!(
            io_error(b.get(&key).await.unwrap_err()).kind(),
            io::ErrorKind::NotFound
        );
    }
}
