//! The agent's HTTP client of `/api/drive` (a session cookie from signing in).

use std::path::Path;

use meridian_shared::api::Credentials;
use meridian_shared::drive::chunking::{manifest_id, Chunker};
use meridian_shared::drive::{Changes, ChunkRef, Committed, NewUpload, Node, UploadStatus};
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
    /// to send the chunks the server lacks). Answers the commit and the chunks sent.
    pub async fn upload(
        &self,
        path: &Path,
        mut target: NewUpload,
    ) -> Result<(Committed, usize), AgentError> {
        let (chunks, _) = manifest_of_file(path).await?;
        target.chunks = chunks.clone();
        let status: UploadStatus =
            Api::json(self.http.post(self.url("/api/drive/uploads")).json(&target)).await?;
        let mut missing: std::collections::HashSet<String> = status.missing.into_iter().collect();
        let sent = missing.len();
        if !missing.is_empty() {
            let mut file = tokio::fs::File::open(path).await?;
            let mut chunker = Chunker::new();
            let mut buf = vec![0u8; READ_BUF];
            let mut ready: Vec<Vec<u8>> = Vec::new();
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                chunker.push(&buf[..n], &mut |c| ready.push(c.to_vec()));
                for chunk in ready.drain(..) {
                    self.send_chunk(&status.upload_id, &mut missing, chunk)
                        .await?;
                }
            }
            chunker.finish(&mut |c| ready.push(c.to_vec()));
            for chunk in ready.drain(..) {
                self.send_chunk(&status.upload_id, &mut missing, chunk)
                    .await?;
            }
        }
        let committed = Api::json(
            self.http
                .post(self.url(&format!("/api/drive/uploads/{}/commit", status.upload_id))),
        )
        .await?;
        Ok((committed, sent))
    }

    async fn send_chunk(
        &self,
        upload_id: &str,
        missing: &mut std::collections::HashSet<String>,
        chunk: Vec<u8>,
    ) -> Result<(), AgentError> {
        let hash = meridian_shared::drive::chunking::chunk_hash(&chunk);
        if !missing.remove(&hash) {
            return Ok(());
        }
        let url = self.url(&format!("/api/drive/uploads/{upload_id}/chunks/{hash}"));
        // A chunk's PUT is idempotent: a connection lost on the way is tried again.
        let mut attempt = 0;
        let response = loop {
            match self.http.put(&url).body(chunk.clone()).send().await {
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

    /// Streams a version into `dest`, checking it against `content_id` as it goes.
    pub async fn download(
        &self,
        version_id: &str,
        content_id: &str,
        dest: &Path,
    ) -> Result<(), AgentError> {
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
        if manifest_id(&manifest.finish()) != content_id {
            return Err(AgentError::Corrupt(version_id.to_owned()));
        }
        Ok(())
    }
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
