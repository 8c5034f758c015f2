//! The agent's HTTP client of `/api/drive` (a session cookie from signing in).

use std::path::Path;

use meridian_shared::api::Credentials;
use std::collections::{HashMap, HashSet};

use meridian_shared::drive::chunking::{chunk_hash, manifest_id, Chunker};
use meridian_shared::drive::delta::edits_between;
use meridian_shared::drive::{
    Changes, ChunkRef, Committed, DeltaBase, NewUpload, Node, UploadStatus,
};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt;

use super::AgentError;

/// Bytes read from a file at a time.
const READ_BUF: usize = 1 << 20;

/// How often an idempotent request is tried again after its connection was lost.
const RETRIES: u32 = 3;

/// A signed-in client of one server.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// An error answer of the server: status and `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Api {
    /// Signs in at `server` (`http://host:port`).
    pub async fn sign_in(server: &str, username: &str, password: &str) -> Result<Api, AgentError> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .map_err(AgentError::Http)?;
        let api = Api {
            http,
            base: server.trim_end_matches('/').to_owned(),
        };
        let response = api
            .http
            .post(api.url("/api/auth/signin"))
            .json(&Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            })
            .send()
            .await?;
        Api::check(response).await?;
        Ok(api)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, AgentError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Err(AgentError::Refused(Refusal {
            status,
            code: body["code"].as_str().unwrap_or("unknown").to_owned(),
            message: body["message"].as_str().unwrap_or("").to_owned(),
        }))
    }

    async fn json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, AgentError> {
        Ok(Api::check(request.send().await?).await?.json().await?)
    }

    pub async fn changes(&self, since: u64) -> Result<Changes, AgentError> {
        Api::json(
            self.http
                .get(self.url(&format!("/api/drive/changes?since={since}"))),
        )
        .await
    }

    pub async fn create_folder(
        &self,
        parent_id: Option<&str>,
        name: &str,
    ) -> Result<Node, AgentError> {
        Api::json(
            self.http
                .post(self.url("/api/drive/folders"))
                .json(&serde_json::json!({"parent_id": parent_id, "name": name})),
        )
        .await
    }

    pub async fn move_node(
        &self,
        id: &str,
        parent_id: Option<&str>,
        name: &str,
    ) -> Result<Node, AgentError> {
        Api::json(
            self.http
                .patch(self.url(&format!("/api/drive/nodes/{id}")))
                .json(&serde_json::json!({"parent_id": parent_id, "name": name})),
        )
        .await
    }

    pub async fn delete(&self, id: &str, if_version: Option<&str>) -> Result<(), AgentError> {
        let mut request = self
            .http
            .delete(self.url(&format!("/api/drive/nodes/{id}")));
        if let Some(version) = if_version {
            request = request.query(&[("if_version", version)]);
        }
        Api::check(request.send().await?).await?;
        Ok(())
    }

    pub async fn restore(&self, id: &str) -> Result<Node, AgentError> {
        Api::json(
            self.http
                .post(self.url(&format!("/api/drive/nodes/{id}/restore"))),
        )
        .await
    }

    /// Uploads the file at `path` (chunked twice, streaming: once for the manifest, once
    /// to send the chunks the server lacks). With `base`, the chunk list of
    /// `target.base_version`, the manifest goes as edits of it; changed chunks go as
    /// deltas against the base chunks the server offers (whole where it offers none).
    pub async fn upload(
        &self,
        path: &Path,
        mut target: NewUpload,
        base: Option<&[ChunkRef]>,
    ) -> Result<Uploaded, AgentError> {
        let (chunks, content_id) = manifest_of_file(path).await?;
        let status = self.start_upload(&mut target, &chunks, base).await?;
        let bases: HashMap<String, DeltaBase> = status
            .bases
            .into_iter()
            .map(|b| (b.hash.clone(), b))
            .collect();
        let mut missing: HashSet<String> = status.missing.into_iter().collect();
        let chunks_sent = missing.len();
        let mut deltas_sent = 0;
        if !missing.is_empty() {
            let mut file = tokio::fs::File::open(path).await?;
            let mut chunker = Some(Chunker::new());
            let mut buf = vec![0u8; READ_BUF];
            let mut ready: Vec<Vec<u8>> = Vec::new();
            while let Some(mut open) = chunker.take() {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    open.finish(&mut |c| ready.push(c.to_vec()));
                } else {
                    open.push(&buf[..n], &mut |c| ready.push(c.to_vec()));
                    chunker = Some(open);
                }
                for chunk in ready.drain(..) {
                    let sent = self
                        .send_chunk(&status.upload_id, &mut missing, &bases, chunk)
                        .await?;
                    deltas_sent += usize::from(sent == Some(Sent::Delta));
                }
            }
        }
        let committed: Committed = Api::json(
            self.http
                .post(self.url(&format!("/api/drive/uploads/{}/commit", status.upload_id))),
        )
        .await?;
        if committed.version.content_id != content_id {
            // The file changed while it was read, or the edits met another base list.
            return Err(AgentError::Corrupt(committed.version.id));
        }
        Ok(Uploaded {
            committed,
            chunks_sent,
            deltas_sent,
            chunks,
        })
    }

    /// Creates the upload: as edits of `base` when there is one (falling back to the whole
    /// list when the server no longer has that base), asking for delta bases whenever
    /// the upload names a base version.
    async fn start_upload(
        &self,
        target: &mut NewUpload,
        chunks: &[ChunkRef],
        base: Option<&[ChunkRef]>,
    ) -> Result<UploadStatus, AgentError> {
        let url = self.url("/api/drive/uploads");
        target.signatures = target.base_version.is_some() && target.node_id.is_some();
        if let (Some(base), true) = (base, target.signatures) {
            let edited = NewUpload {
                chunks: Vec::new(),
                chunk_edits: Some(edits_between(base, chunks)),
                ..target.clone()
            };
            match Api::json(self.http.post(&url).json(&edited)).await {
                Err(AgentError::Refused(r))
                    if r.is(StatusCode::NOT_FOUND, "version_not_found")
                        || r.is(StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest") =>
                {
                    tracing::debug!(?r, "chunk edits refused: sending the whole list");
                }
                other => return other,
            }
        }
        target.chunks = chunks.to_vec();
        target.chunk_edits = None;
        Api::json(self.http.post(&url).json(&target)).await
    }

    /// Sends `chunk` if the server still lacks it: as a delta when the server offered a
    /// base for it and the delta is smaller, else (or if the delta is refused) whole.
    async fn send_chunk(
        &self,
        upload_id: &str,
        missing: &mut HashSet<String>,
        bases: &HashMap<String, DeltaBase>,
        chunk: Vec<u8>,
    ) -> Result<Option<Sent>, AgentError> {
        let hash = chunk_hash(&chunk);
        if !missing.remove(&hash) {
            return Ok(None);
        }
        if let Some((base, delta)) = bases
            .get(&hash)
            .and_then(|base| Some((base, base.delta_of(&chunk)?)))
        {
            let url = self.url(&format!(
                "/api/drive/uploads/{upload_id}/deltas/{hash}?base={}",
                base.base
            ));
            match self.put_idempotent(&url, delta).await {
                Ok(()) => return Ok(Some(Sent::Delta)),
                Err(AgentError::Refused(r)) if (400..500).contains(&r.status) => {
                    tracing::debug!(?r, "delta refused: sending the whole chunk");
                }
                Err(err) => return Err(err),
            }
        }
        let url = self.url(&format!("/api/drive/uploads/{upload_id}/chunks/{hash}"));
        self.put_idempotent(&url, chunk).await?;
        Ok(Some(Sent::Whole))
    }

    /// A `PUT` of bytes, tried again when its connection was lost on the way (chunk and
    /// delta `PUT`s are idempotent).
    async fn put_idempotent(&self, url: &str, body: Vec<u8>) -> Result<(), AgentError> {
        let mut attempt = 0;
        let response = loop {
            match self.http.put(url).body(body.clone()).send().await {
                Ok(response) => break response,
                Err(err) if attempt < RETRIES && (err.is_request() || err.is_connect()) => {
                    attempt += 1;
                    tracing::debug!(%err, attempt, "retrying a chunk");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
                }
                Err(err) => return Err(err.into()),
            }
        };
        Api::check(response).await?;
        Ok(())
    }

    /// Streams a version into `dest`, checking it against `content_id` as it goes;
    /// answers its chunk list.
    pub async fn download(
        &self,
        version_id: &str,
        content_id: &str,
        dest: &Path,
    ) -> Result<Vec<ChunkRef>, AgentError> {
        use tokio::io::AsyncWriteExt;
        let mut response = Api::check(
            self.http
                .get(self.url(&format!("/api/drive/versions/{version_id}/content")))
                .send()
                .await?,
        )
        .await?;
        let mut file = tokio::fs::File::create(dest).await?;
        let mut manifest = meridian_shared::drive::chunking::ManifestBuilder::new();
        while let Some(piece) = response.chunk().await? {
            manifest.push(&piece);
            file.write_all(&piece).await?;
        }
        file.sync_all().await?;
        let chunks = manifest.finish();
        if manifest_id(&chunks) != content_id {
            return Err(AgentError::Corrupt(version_id.to_owned()));
        }
        Ok(chunks)
    }
}

/// What an upload did.
#[derive(Debug)]
pub struct Uploaded {
    pub committed: Committed,
    /// Chunks the server lacked, sent whole or as deltas.
    pub chunks_sent: usize,
    /// Of those, the ones sent as deltas.
    pub deltas_sent: usize,
    /// The version's chunk list.
    pub chunks: Vec<ChunkRef>,
}

/// How a missing chunk travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Whole,
    Delta,
}

/// The manifest and content id of a local file, read in pieces.
pub async fn manifest_of_file(path: &Path) -> Result<(Vec<ChunkRef>, String), AgentError> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut manifest = meridian_shared::drive::chunking::ManifestBuilder::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        manifest.push(&buf[..n]);
    }
    let chunks = manifest.finish();
    let id = manifest_id(&chunks);
    Ok((chunks, id))
}

impl Refusal {
    pub fn is(&self, status: StatusCode, code: &str) -> bool {
        self.status == status.as_u16() && self.code == code
    }
}
