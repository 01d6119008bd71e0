//! `ObjectStore` over the GCS JSON API.
//!
//! Uploads are `multipart/related` (metadata and bytes in one request); multipart writes are
//! collected and sent as one resumable upload in 8 MiB chunks. Create-only writes use
//! `ifGenerationMatch=0` and updates `ifGenerationMatch=<generation>`; the generation is the
//! object's version. Conditional reads fetch the object's metadata, check the conditions against
//! it, and then read exactly that generation, so a read never mixes two versions.

use std::{fmt, ops::Range, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    Attribute, Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload,
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result, UploadPart, path::Path,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::auth::{TokenSource, endpoint_from_env};

const STORE: &str = "GCS";
/// Resumable upload chunks must be multiples of 256 KiB.
const CHUNK: usize = 32 * 256 * 1024;

/// Where the bucket is and how to authenticate.
#[derive(Debug)]
pub struct GcsConfig {
    pub bucket: String,
    /// `https://storage.googleapis.com`, or the emulator's address.
    pub endpoint: String,
    pub tokens: TokenSource,
}

impl GcsConfig {
    /// Real GCS with application default credentials, or the emulator named by
    /// `STORAGE_EMULATOR_HOST` (Google's own convention) without credentials.
    pub fn from_env(bucket: impl Into<String>) -> crate::Result<Self> {
        let (endpoint, tokens) =
            endpoint_from_env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com")?;
        Ok(Self {
            bucket: bucket.into(),
            endpoint,
            tokens,
        })
    }
}

/// A GCS bucket as an `ObjectStore`, through the JSON API.
#[derive(Debug, Clone)]
pub struct GcsJsonStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    endpoint: String,
    bucket: String,
    tokens: TokenSource,
}

impl fmt::Display for GcsJsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcsJsonStore({})", self.inner.bucket)
    }
}

/// The object resource fields imagelake reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    name: String,
    size: String,
    updated: DateTime<Utc>,
    etag: Option<String>,
    generation: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

impl Object {
    fn meta(&self) -> Result<ObjectMeta> {
        Ok(ObjectMeta {
            location: Path::parse(&self.name)?,
            last_modified: self.updated,
            size: self
                .size
                .parse()
                .map_err(|e| generic(format!("bad object size {:?}: {e}", self.size)))?,
            e_tag: self.etag.clone(),
            version: Some(self.generation.clone()),
        })
    }

    fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        for (key, value) in [
            (Attribute::ContentType, &self.content_type),
            (Attribute::ContentEncoding, &self.content_encoding),
            (Attribute::ContentDisposition, &self.content_disposition),
            (Attribute::ContentLanguage, &self.content_language),
            (Attribute::CacheControl, &self.cache_control),
        ] {
            if let Some(v) = value {
                attributes.insert(key, v.clone().into());
            }
        }
        for (k, v) in &self.metadata {
            attributes.insert(Attribute::Metadata(k.clone().into()), v.clone().into());
        }
        attributes
    }
}

fn generic(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: source.into(),
    }
}

/// Percent-encodes an object name for a URL path segment or query value.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Turns an unsuccessful answer into the `object_store` error that means the same.
async fn check(response: Response, path: &Path, create: bool) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let source = format!("{status}: {}", body.chars().take(300).collect::<String>()).into();
    let path = path.to_string();
    Err(match status {
        StatusCode::NOT_FOUND => object_store::Error::NotFound { path, source },
        StatusCode::PRECONDITION_FAILED if create => {
            object_store::Error::AlreadyExists { path, source }
        }
        StatusCode::PRECONDITION_FAILED => object_store::Error::Precondition { path, source },
        StatusCode::NOT_MODIFIED => object_store::Error::NotModified { path, source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    })
}

impl GcsJsonStore {
    pub fn new(config: GcsConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| generic(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                endpoint: config.endpoint.trim_end_matches('/').to_owned(),
                bucket: config.bucket,
                tokens: config.tokens,
            }),
        })
    }

    fn object_url(&self, path: &Path) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.inner.endpoint,
            encode(&self.inner.bucket),
            encode(path.as_ref())
        )
    }

    fn upload_url(&self) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o",
            self.inner.endpoint,
            encode(&self.inner.bucket)
        )
    }

    async fn request(&self, method: Method, url: &str) -> Result<RequestBuilder> {
        let mut builder = self.inner.client.request(method, url);
        if let Some(token) = self
            .inner
            .tokens
            .token(&self.inner.client)
            .await
            .map_err(generic)?
        {
            builder = builder.bearer_auth(token);
        }
        Ok(builder)
    }

    async fn send(&self, builder: RequestBuilder, path: &Path, create: bool) -> Result<Response> {
        let response = builder
            .send()
            .await
            .map_err(|e| generic(format!("request failed: {e}")))?;
        check(response, path, create).await
    }

    async fn metadata(&self, path: &Path, generation: Option<&str>) -> Result<Object> {
        let mut builder = self.request(Method::GET, &self.object_url(path)).await?;
        if let Some(g) = generation {
            builder = builder.query(&[("generation", g)]);
        }
        let response = self.send(builder, path, false).await?;
        response
            .json()
            .await
            .map_err(|e| generic(format!("bad object resource: {e}")))
    }

    /// The JSON metadata part of an upload: name, content type and custom metadata.
    fn resource(path: &Path, attributes: &Attributes) -> serde_json::Value {
        let mut resource = serde_json::json!({"name": path.as_ref()});
        let mut metadata = serde_json::Map::new();
        for (key, value) in attributes {
            match key {
                Attribute::ContentType => resource["contentType"] = value.as_ref().into(),
                Attribute::ContentEncoding => resource["contentEncoding"] = value.as_ref().into(),
                Attribute::ContentDisposition => {
                    resource["contentDisposition"] = value.as_ref().into()
                }
                Attribute::ContentLanguage => resource["contentLanguage"] = value.as_ref().into(),
                Attribute::CacheControl => resource["cacheControl"] = value.as_ref().into(),
                Attribute::Metadata(k) => {
                    metadata.insert(k.to_string(), value.as_ref().into());
                }
                _ => {}
            }
        }
        if !metadata.is_empty() {
            resource["metadata"] = metadata.into();
        }
        resource
    }

    fn precondition(mode: &PutMode) -> Result<Option<String>> {
        Ok(match mode {
            PutMode::Overwrite => None,
            PutMode::Create => Some("0".to_owned()),
            PutMode::Update(v) => Some(v.version.clone().ok_or_else(|| {
                generic("conditional update needs the object's generation (version)")
            })?),
        })
    }

    async fn upload(
        &self,
        path: &Path,
        data: Bytes,
        attributes: &Attributes,
        if_generation: Option<String>,
    ) -> Result<PutResult> {
        let boundary = "imagelake-upload-boundary-7f1c2a";
        let resource = Self::resource(path, attributes).to_string();
        let media_type = attributes
            .get(&Attribute::ContentType)
            .map_or("application/octet-stream", |v| v.as_ref());
        let mut body = Vec::with_capacity(data.len() + resource.len() + 256);
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n").as_bytes());
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {media_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let create = if_generation.as_deref() == Some("0");
        let mut query = vec![("uploadType", "multipart".to_owned())];
        if let Some(g) = if_generation {
            query.push(("ifGenerationMatch", g));
        }
        let builder = self
            .request(Method::POST, &self.upload_url())
            .await?
            .query(&query)
            .header(
                "Content-Type",
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body);
        let object: Object = self
            .send(builder, path, create)
            .await?
            .json()
            .await
            .map_err(|e| generic(e.to_string()))?;
        Ok(PutResult {
            e_tag: object.etag,
            version: Some(object.generation),
        })
    }

    /// Sends `data` through a resumable session in `CHUNK`-sized requests.
    async fn upload_resumable(
        &self,
        path: &Path,
        data: Bytes,
        attributes: &Attributes,
    ) -> Result<PutResult> {
        let builder = self
            .request(Method::POST, &self.upload_url())
            .await?
            .query(&[("uploadType", "resumable")])
            .json(&Self::resource(path, attributes));
        let session = self.send(builder, path, false).await?;
        let location = session
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| generic("resumable upload answered without a session location"))?
            .to_owned();
        let total = data.len();
        let mut offset = 0;
        loop {
            let end = (offset + CHUNK).min(total);
            let range = if total == 0 {
                "bytes */0".to_owned()
            } else {
                let size = if end == total {
                    total.to_string()
                } else {
                    "*".to_owned()
                };
                format!("bytes {offset}-{}/{size}", end - 1)
            };
            let builder = self
                .request(Method::PUT, &location)
                .await?
                .header("Content-Range", range)
                .body(data.slice(offset..end));
            let response = builder
                .send()
                .await
                .map_err(|e| generic(format!("upload chunk failed: {e}")))?;
            // 308 means "resume incomplete": the chunk is stored, send the next one.
            if response.status() == StatusCode::PERMANENT_REDIRECT && end < total {
                offset = end;
                continue;
            }
            let object: Object = check(response, path, false)
                .await?
                .json()
                .await
                .map_err(|e| generic(e.to_string()))?;
            return Ok(PutResult {
                e_tag: object.etag,
                version: Some(object.generation),
            });
        }
    }

    async fn delete_one(&self, path: Path) -> Result<Path> {
        let builder = self
            .request(Method::DELETE, &self.object_url(&path))
            .await?;
        self.send(builder, &path, false).await?;
        Ok(path)
    }

    async fn list_page(
        &self,
        prefix: Option<&Path>,
        delimiter: bool,
        token: Option<String>,
    ) -> Result<Listing> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(p) = prefix.filter(|p| !p.as_ref().is_empty()) {
            query.push(("prefix", format!("{}/", p.as_ref())));
        }
        if delimiter {
            query.push(("delimiter", "/".to_owned()));
        }
        if let Some(t) = token {
            query.push(("pageToken", t));
        }
        let url = format!(
            "{}/storage/v1/b/{}/o",
            self.inner.endpoint,
            encode(&self.inner.bucket)
        );
        let builder = self.request(Method::GET, &url).await?.query(&query);
        let root = Path::default();
        self.send(builder, prefix.unwrap_or(&root), false)
            .await?
            .json()
            .await
            .map_err(|e| generic(format!("bad listing: {e}")))
    }
}

#[async_trait]
impl ObjectStore for GcsJsonStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let if_generation = Self::precondition(&opts.mode)?;
        self.upload(
            location,
            Bytes::from(payload),
            &opts.attributes,
            if_generation,
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(BufferedUpload {
            store: self.clone(),
            location: location.clone(),
            attributes: opts.attributes,
            parts: Vec::new(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let object = self.metadata(location, options.version.as_deref()).await?;
        let meta = object.meta()?;
        options.check_preconditions(&meta)?;
        let attributes = object.attributes();
        let range: Range<u64> = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(|e| generic(e.to_string()))?,
            None => 0..meta.size,
        };
        if options.head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                meta,
                range,
                attributes,
            });
        }
        let mut builder = self
            .request(Method::GET, &self.object_url(location))
            .await?
            .query(&[("alt", "media"), ("generation", object.generation.as_str())]);
        if options.range.is_some() && range.end > range.start {
            builder = builder.header("Range", format!("bytes={}-{}", range.start, range.end - 1));
        }
        let payload = if range.is_empty() {
            futures::stream::empty().boxed()
        } else {
            let response = self.send(builder, location, false).await?;
            response
                .bytes_stream()
                .map_err(|e| generic(format!("read failed: {e}")))
                .boxed()
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move { store.delete_one(location?).await }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let store = self.clone();
        let prefix = prefix.cloned();
        futures::stream::try_unfold(Some(None), move |state: Option<Option<String>>| {
            let (store, prefix) = (store.clone(), prefix.clone());
            async move {
                let Some(token) = state else {
                    return Ok::<_, object_store::Error>(None);
                };
                let page = store.list_page(prefix.as_ref(), false, token).await?;
                let metas = page
                    .items
                    .iter()
                    .map(Object::meta)
                    .collect::<Result<Vec<_>>>()?;
                let next = page.next_page_token.map(Some);
                Ok(Some((
                    futures::stream::iter(metas.into_iter().map(Ok)),
                    next,
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
        };
        let mut token = None;
        loop {
            let page = self.list_page(prefix, true, token).await?;
            for p in page.prefixes {
                result
                    .common_prefixes
                    .push(Path::parse(p.trim_end_matches('/'))?);
            }
            for item in &page.items {
                result.objects.push(item.meta()?);
            }
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(result),
            }
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let url = format!(
            "{}/copyTo/b/{}/o/{}",
            self.object_url(from),
            encode(&self.inner.bucket),
            encode(to.as_ref())
        );
        let mut builder = self
            .request(Method::POST, &url)
            .await?
            .header("Content-Length", "0");
        let create = matches!(options.mode, CopyMode::Create);
        if create {
            builder = builder.query(&[("ifGenerationMatch", "0")]);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| generic(format!("copy failed: {e}")))?;
        // A missing source is reported against the source; a refused create against the target.
        match check(response, if create { to } else { from }, create).await {
            Err(object_store::Error::NotFound { source, .. }) => {
                Err(object_store::Error::NotFound {
                    path: from.to_string(),
                    source,
                })
            }
            other => other.map(drop),
        }
    }
}

/// Collects the parts of a multipart write and sends them as one resumable upload on
/// `complete`. Parts are kept in the order `put_part` was called, which is the object's order.
#[derive(Debug)]
struct BufferedUpload {
    store: GcsJsonStore,
    location: Path,
    attributes: Attributes,
    parts: Vec<PutPayload>,
}

#[async_trait]
impl MultipartUpload for BufferedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts.push(data);
        Box::pin(futures::future::ready(Ok(())))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let size = self.parts.iter().map(PutPayload::content_length).sum();
        let mut data = Vec::with_capacity(size);
        for part in self.parts.drain(..) {
            for chunk in part.iter() {
                data.extend_from_slice(chunk);
            }
        }
        self.store
            .upload_resumable(&self.location, Bytes::from(data), &self.attributes)
            .await
    }

    async fn abort(&mut self) -> Result<()> {
        self.parts.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode("originals/c/i"), "originals%2Fc%2Fi");
        assert_eq!(encode("a b+c%"), "a%20b%2Bc%25");
        assert_eq!(encode("ü"), "%C3%BC");
    }
}
