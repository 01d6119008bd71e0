//! [`MetadataStore`] on the client: the inserts and changes that must not race, and the rest.

use async_trait::async_trait;
use imagelake_core::{
    CustomerId, ImageId, KeyId, Timestamp,
    events::{Event, EventType},
    records::{AnyKey, ApiKey, Customer, Image, ImageStatus, ServiceKey},
};
use imagelake_metadata::{
    IdempotencyRecord, ImageQuery, InsertOutcome, MetadataStore, NewImage, Removal, Result,
    StoreError,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    FirestoreStore, Refused, TRANSACTION_ATTEMPTS, backend, backoff,
    client::{all_of, compare, equal, order},
    values::{
        customer_fields, customer_from, dedup_id, doc_id, email_id, get_str, get_ts,
        idempotency_fields, idempotency_from, idempotency_id, image_fields, image_from, key_fields,
        key_from, need, parse, service_key_fields, service_key_from, string, ts,
    },
};

impl FirestoreStore {
    /// The oldest live image of `customer` with these bytes, by query (outside transactions).
    pub(super) async fn live_duplicate(
        &self,
        customer: CustomerId,
        sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Image>> {
        let query = json!({
            "from": [{"collectionId": "images"}],
            "where": all_of(vec![equal("customer_id", string(&customer.to_string())), equal("sha256", string(sha256))]),
        });
        let mut live: Vec<Image> = self
            .query(query)
            .await?
            .iter()
            .map(image_from)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|i| i.expires_at > now)
            .collect();
        live.sort_by_key(|i| (i.uploaded_at, i.id));
        Ok(live.into_iter().next())
    }

    /// One attempt at the insert: a single commit of the record, its `dedup` marker, its
    /// idempotency key and its event, made atomic and race-free by preconditions rather than a
    /// transaction. The marker and the key are created only if absent (or the marker replaced
    /// only at the `update_time` it was read with, when it is stale), so of concurrent uploads
    /// of the same bytes exactly one commits and the others fail at once, without holding or
    /// waiting for locks; each then reads what won, outside any transaction.
    pub(super) async fn try_insert_image(
        &self,
        new: &NewImage,
        stale: Option<&str>,
    ) -> Result<Attempt> {
        let image = &new.image;
        let customer = image.customer_id;
        let mut writes = vec![json!({
            "update": {"name": self.name("images", &image.id.to_string()), "fields": image_fields(image)},
            "currentDocument": {"exists": false},
        })];
        // A record made before its bytes arrive (a signed-URL upload) has no hash to compare yet.
        let has_bytes = !image.sha256.is_empty();
        if has_bytes {
            let mut marker = self.upsert(
                "dedup",
                &dedup_id(customer, &image.sha256),
                json!({
                    "customer_id": string(&customer.to_string()),
                    "image_id": string(&image.id.to_string()),
                    "expires_at": ts(image.expires_at),
                }),
            );
            marker["currentDocument"] = match stale {
                Some(update_time) => json!({"updateTime": update_time}),
                None => json!({"exists": false}),
            };
            writes.push(marker);
        }
        if let Some(idem) = &new.idempotency {
            let mut key = self.upsert(
                "idempotency",
                &idempotency_id(customer, &idem.key),
                idempotency_fields(customer, idem),
            );
            key["currentDocument"] = json!({"exists": false});
            writes.push(key);
        }
        let received = Event::image(EventType::ImageReceived, image, image.uploaded_at);
        writes.push(self.outbox_write(&received)?);
        match self.commit(writes, None).await {
            Ok(()) => Ok(Attempt::Done(InsertOutcome::Created)),
            Err(Refused::Precondition) => self.what_won(new).await,
            Err(Refused::Aborted) => Ok(Attempt::Again(stale.map(str::to_owned))),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    /// After a refused insert: the idempotency key's first answer, or the live image with these
    /// bytes, or what to replace on the next try.
    pub(super) async fn what_won(&self, new: &NewImage) -> Result<Attempt> {
        let image = &new.image;
        if let Some(idem) = &new.idempotency
            && let Some(previous) = self
                .get("idempotency", &idempotency_id(image.customer_id, &idem.key))
                .await?
        {
            return Ok(Attempt::Done(InsertOutcome::Replay(idempotency_from(
                &previous,
            )?)));
        }
        if image.sha256.is_empty() {
            return Err(StoreError::AlreadyExists(format!("image {}", image.id)));
        }
        let Some(marker) = self
            .get("dedup", &dedup_id(image.customer_id, &image.sha256))
            .await?
        else {
            // Removed in between: try again as the first.
            return Ok(Attempt::Again(None));
        };
        let update_time = need(
            marker.get("updateTime").and_then(Value::as_str),
            "updateTime",
        )?;
        let live = match get_str(&marker, "image_id") {
            Some(existing) => self
                .get("images", &existing)
                .await?
                .as_ref()
                .map(image_from)
                .transpose()?
                .filter(|i| i.expires_at > image.uploaded_at),
            None => None,
        };
        Ok(match live {
            Some(existing) => Attempt::Done(InsertOutcome::Duplicate(Box::new(existing))),
            // Its image was deleted or has expired: the marker is stale, replace it.
            None => Attempt::Again(Some(update_time.to_owned())),
        })
    }

    /// One attempt at changing a customer: the customer and the email markers in one
    /// transaction, so two customers never end up with one email.
    pub(super) async fn try_update_customer(
        &self,
        customer: &Customer,
    ) -> Result<Result<(), Refused>> {
        let transaction = self.begin().await?;
        let name = self.name("customers", &customer.id.to_string());
        let marker = self.name("customer_emails", &email_id(customer));
        let found = match self
            .batch_get(&[name.clone(), marker.clone()], &transaction)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.rollback(&transaction).await;
                return Err(e);
            }
        };
        let doc = |n: &str| {
            found
                .iter()
                .find(|d| d.get("name").and_then(Value::as_str) == Some(n))
        };
        let Some(current) = doc(&name).map(customer_from).transpose()? else {
            self.rollback(&transaction).await;
            return Ok(Err(Refused::Precondition));
        };
        if doc(&marker)
            .and_then(|m| get_str(m, "customer_id"))
            .is_some_and(|owner| owner != customer.id.to_string())
        {
            self.rollback(&transaction).await;
            return Err(email_taken());
        }
        let mut writes = vec![json!({
            "update": {"name": name, "fields": customer_fields(customer)},
            "currentDocument": {"exists": true},
        })];
        if email_id(&current) != email_id(customer) {
            writes.push(self.delete_write(&self.name("customer_emails", &email_id(&current))));
        }
        writes.push(self.email_marker(customer));
        let event = Event::customer(EventType::CustomerUpdated, customer, customer.updated_at);
        writes.push(self.outbox_write(&event)?);
        Ok(self.commit(writes, Some(&transaction)).await)
    }

    pub(super) fn email_marker(&self, customer: &Customer) -> Value {
        self.upsert(
            "customer_emails",
            &email_id(customer),
            json!({"customer_id": string(&customer.id.to_string())}),
        )
    }
}

/// How one try of the insert ended.
pub(super) enum Attempt {
    Done(InsertOutcome),
    /// Try again; replacing the stale `dedup` marker last updated at this time, if any.
    Again(Option<String>),
}

pub(super) fn email_taken() -> StoreError {
    StoreError::AlreadyExists("a customer with this email".to_owned())
}

#[async_trait]
impl MetadataStore for FirestoreStore {
    async fn insert_customer(&self, customer: &Customer, key: &ApiKey) -> Result<()> {
        let mut marker = self.email_marker(customer);
        marker["currentDocument"] = json!({"exists": false});
        let writes = vec![
            json!({
                "update": {"name": self.name("customers", &customer.id.to_string()), "fields": customer_fields(customer)},
                "currentDocument": {"exists": false},
            }),
            marker,
            self.upsert("api_keys", &key.hash, key_fields(key)),
            self.outbox_write(&Event::customer(
                EventType::CustomerCreated,
                customer,
                customer.created_at,
            ))?,
        ];
        match self.commit(writes, None).await {
            Ok(()) => Ok(()),
            Err(Refused::Precondition) => {
                let exists = self.get("customers", &customer.id.to_string()).await?;
                Err(if exists.is_some() {
                    StoreError::AlreadyExists(format!("customer {}", customer.id))
                } else {
                    email_taken()
                })
            }
            Err(Refused::Aborted) => Err(backend("customer creation aborted")),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>> {
        self.get("customers", &id.to_string())
            .await?
            .as_ref()
            .map(customer_from)
            .transpose()
    }

    async fn list_customers(
        &self,
        after: Option<(Timestamp, CustomerId)>,
        limit: usize,
    ) -> Result<Vec<Customer>> {
        let mut structured = json!({
            "from": [{"collectionId": "customers"}],
            "orderBy": [order("created_at", "DESCENDING"), order("__name__", "DESCENDING")],
            "limit": limit,
        });
        if let Some((created_at, id)) = after {
            structured["startAt"] = json!({
                "values": [ts(created_at), {"referenceValue": self.name("customers", &id.to_string())}],
                "before": false,
            });
        }
        self.query(structured)
            .await?
            .iter()
            .map(customer_from)
            .collect()
    }

    async fn update_customer(&self, customer: &Customer) -> Result<()> {
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.try_update_customer(customer).await? {
                Ok(()) => return Ok(()),
                Err(Refused::Aborted) => backoff(attempt).await,
                Err(Refused::Precondition) => return Err(StoreError::NotFound),
                Err(Refused::Other(e)) => return Err(e),
            }
        }
        Err(backend("customer update kept losing transaction races"))
    }

    async fn delete_customer(&self, id: CustomerId, at: Timestamp) -> Result<()> {
        let Some(doc) = self.get("customers", &id.to_string()).await? else {
            return Err(StoreError::NotFound);
        };
        let customer = customer_from(&doc)?;
        let owner = equal("customer_id", string(&id.to_string()));
        let images = json!({"from": [{"collectionId": "images"}], "where": owner.clone()});
        let mut groups = Vec::new();
        for doc in self.query(images).await? {
            let image = image_from(&doc)?;
            let event = Event::image(EventType::ImageDeleted, &image, at);
            let name = need(doc.get("name").and_then(Value::as_str), "name")?;
            groups.push(vec![self.delete_write(name), self.outbox_write(&event)?]);
        }
        for collection in ["idempotency", "dedup", "api_keys"] {
            for name in self.names_where(collection, owner.clone()).await? {
                groups.push(vec![self.delete_write(&name)]);
            }
        }
        let deleted = Event::customer(EventType::CustomerDeleted, &customer, at);
        let mut last = vec![
            self.delete_write(&self.name("customers", &id.to_string())),
            self.outbox_write(&deleted)?,
        ];
        // The email's marker goes with its customer, and only with its own customer.
        let marker = self.get("customer_emails", &email_id(&customer)).await?;
        if marker.and_then(|m| get_str(&m, "customer_id")) == Some(id.to_string()) {
            last.push(self.delete_write(&self.name("customer_emails", &email_id(&customer))));
        }
        groups.push(last);
        self.commit_groups(groups).await
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<()> {
        if self
            .get("customers", &key.customer_id.to_string())
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        self.commit_all(vec![self.upsert("api_keys", &key.hash, key_fields(key))])
            .await
    }

    async fn list_keys(&self, customer: CustomerId) -> Result<Vec<ApiKey>> {
        let query = json!({"from": [{"collectionId": "api_keys"}], "where": equal("customer_id", string(&customer.to_string()))});
        let mut keys = self
            .query(query)
            .await?
            .iter()
            .map(key_from)
            .collect::<Result<Vec<_>>>()?;
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke_key(&self, customer: CustomerId, key: KeyId, at: Timestamp) -> Result<()> {
        let found = self
            .list_keys(customer)
            .await?
            .into_iter()
            .find(|k| k.id == key && k.revoked_at.is_none())
            .ok_or(StoreError::NotFound)?;
        let revoked = ApiKey {
            revoked_at: Some(at),
            ..found
        };
        self.commit_all(vec![self.upsert(
            "api_keys",
            &revoked.hash,
            key_fields(&revoked),
        )])
        .await
    }

    async fn find_key(&self, hash: &str) -> Result<Option<ApiKey>> {
        let key = self
            .get("api_keys", hash)
            .await?
            .as_ref()
            .map(key_from)
            .transpose()?;
        Ok(key.filter(|k| k.revoked_at.is_none()))
    }

    async fn insert_service_key(&self, key: &ServiceKey) -> Result<()> {
        let doc = self.upsert("service_keys", &key.hash, service_key_fields(key));
        self.commit_all(vec![doc]).await
    }

    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>> {
        let query = json!({"from": [{"collectionId": "service_keys"}]});
        let mut keys = self
            .query(query)
            .await?
            .iter()
            .map(service_key_from)
            .collect::<Result<Vec<_>>>()?;
        keys.sort_by_key(|k| (k.created_at, k.key_id));
        Ok(keys)
    }

    async fn revoke_service_key(&self, key: KeyId, at: Timestamp) -> Result<()> {
        let found = self
            .list_service_keys()
            .await?
            .into_iter()
            .find(|k| k.key_id == key && k.revoked_at.is_none())
            .ok_or(StoreError::NotFound)?;
        let revoked = ServiceKey {
            revoked_at: Some(at),
            ..found
        };
        let doc = self.upsert("service_keys", &revoked.hash, service_key_fields(&revoked));
        self.commit_all(vec![doc]).await
    }

    async fn find_service_key(&self, hash: &str) -> Result<Option<ServiceKey>> {
        let key = self
            .get("service_keys", hash)
            .await?
            .as_ref()
            .map(service_key_from)
            .transpose()?;
        Ok(key.filter(|k| k.revoked_at.is_none()))
    }

    async fn find_key_by_id(&self, id: KeyId) -> Result<Option<AnyKey>> {
        let id = string(&id.to_string());
        let by_id = |collection: &str| json!({"from": [{"collectionId": collection}], "where": equal("id", id.clone())});
        let live = |doc: &&Value| get_ts(doc, "revoked_at").is_none();
        if let Some(doc) = self.query(by_id("api_keys")).await?.iter().find(live) {
            return key_from(doc).map(|k| Some(AnyKey::Customer(k)));
        }
        match self.query(by_id("service_keys")).await?.iter().find(live) {
            Some(doc) => service_key_from(doc).map(|k| Some(AnyKey::Service(k))),
            None => Ok(None),
        }
    }

    async fn live_key_hashes(&self, limit: usize) -> Result<Vec<String>> {
        let query = json!({
            "from": [{"collectionId": "api_keys"}],
            "select": {"fields": [{"fieldPath": "revoked_at"}]},
            "limit": limit,
        });
        self.query(query)
            .await?
            .iter()
            .filter(|doc| get_ts(doc, "revoked_at").is_none())
            .map(doc_id)
            .collect()
    }

    async fn insert_image(&self, new: &NewImage, enqueue: bool) -> Result<InsertOutcome> {
        if enqueue {
            return Err(backend(
                "Firestore keeps no work queue: on Google Cloud the bucket notification queues the work",
            ));
        }
        let mut stale: Option<String> = None;
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.try_insert_image(new, stale.as_deref()).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Again(replace) => {
                    // Another upload changed the marker between the refusal and the read, or
                    // Firestore aborted the commit: wait a random while, so racing uploads do
                    // not collide again in step.
                    if replace == stale {
                        backoff(attempt).await;
                    }
                    stale = replace;
                }
            }
        }
        Err(backend("image insert kept losing races"))
    }

    async fn find_idempotent(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.get("idempotency", &idempotency_id(customer, key))
            .await?
            .as_ref()
            .map(idempotency_from)
            .transpose()
    }

    async fn remember_answer(
        &self,
        customer: CustomerId,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>> {
        let id = idempotency_id(customer, &record.key);
        let mut write = self.upsert("idempotency", &id, idempotency_fields(customer, record));
        write["currentDocument"] = json!({"exists": false});
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.commit(vec![write.clone()], None).await {
                Ok(()) => return Ok(None),
                Err(Refused::Precondition) => {
                    if let Some(first) = self.get("idempotency", &id).await? {
                        return idempotency_from(&first).map(Some);
                    }
                    // Purged in between: record this one.
                }
                Err(Refused::Aborted) => backoff(attempt).await,
                Err(Refused::Other(e)) => return Err(e),
            }
        }
        Err(backend("recording an idempotent answer kept losing races"))
    }

    async fn find_live_duplicate(
        &self,
        customer: CustomerId,
        sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Image>> {
        self.live_duplicate(customer, sha256, now).await
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<Image>> {
        self.get("images", &id.to_string())
            .await?
            .as_ref()
            .map(image_from)
            .transpose()
    }

    async fn list_images(
        &self,
        customer: Option<CustomerId>,
        query: &ImageQuery,
    ) -> Result<Vec<Image>> {
        let mut filters: Vec<Value> = customer
            .map(|c| equal("customer_id", string(&c.to_string())))
            .into_iter()
            .collect();
        if let Some(since) = query.since {
            filters.push(compare("uploaded_at", "GREATER_THAN_OR_EQUAL", ts(since)));
        }
        if let Some(until) = query.until {
            filters.push(compare("uploaded_at", "LESS_THAN", ts(until)));
        }
        let mut after = query.after.map(|c| (c.uploaded_at, c.id));
        let mut out = Vec::new();
        // Expired records are left out as they are read, so a page may need another round trip.
        while out.len() < query.limit {
            let mut structured = json!({
                "from": [{"collectionId": "images"}],
                "orderBy": [order("uploaded_at", "DESCENDING"), order("__name__", "DESCENDING")],
                "limit": query.limit,
            });
            if !filters.is_empty() {
                structured["where"] = all_of(filters.clone());
            }
            if let Some((uploaded_at, id)) = after {
                structured["startAt"] = json!({
                    "values": [ts(uploaded_at), {"referenceValue": self.name("images", &id.to_string())}],
                    "before": false,
                });
            }
            let page = self
                .query(structured)
                .await?
                .iter()
                .map(image_from)
                .collect::<Result<Vec<_>>>()?;
            let full = page.len() == query.limit;
            after = page.last().map(|i| (i.uploaded_at, i.id));
            out.extend(page.into_iter().filter(|i| i.expires_at > query.now));
            if !full {
                break;
            }
        }
        out.truncate(query.limit);
        Ok(out)
    }

    async fn customer_image_ids(&self, customer: CustomerId) -> Result<Vec<ImageId>> {
        let names = self
            .names_where(
                "images",
                equal("customer_id", string(&customer.to_string())),
            )
            .await?;
        names
            .into_iter()
            .map(|n| parse(n.rsplit('/').next().unwrap_or_default().to_owned()))
            .collect()
    }

    async fn update_image(&self, image: &Image) -> Result<()> {
        let fields = image_fields(image);
        let mask = [
            "status",
            "facts",
            "error",
            "processed_at",
            "bytes",
            "sha256",
            "content_type",
            "generation",
        ];
        let mut writes = vec![json!({
            "update": {"name": self.name("images", &image.id.to_string()), "fields": fields},
            "updateMask": {"fieldPaths": mask},
            "currentDocument": {"exists": true},
        })];
        if let Some(settled) = EventType::settled_as(image.status) {
            let at = image.processed_at.unwrap_or(image.uploaded_at);
            writes.push(self.outbox_write(&Event::image(settled, image, at))?);
        }
        match self.commit(writes, None).await {
            Ok(()) => Ok(()),
            Err(Refused::Precondition) => Err(StoreError::NotFound),
            Err(Refused::Aborted) => Err(backend("image update aborted")),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    async fn delete_image(&self, image: &Image, removal: Removal, at: Timestamp) -> Result<bool> {
        let write = json!({"delete": self.name("images", &image.id.to_string()), "currentDocument": {"exists": true}});
        let event = Event::image(removal.event_type(), image, at);
        match self
            .commit(vec![write, self.outbox_write(&event)?], None)
            .await
        {
            Ok(()) => Ok(true),
            Err(Refused::Precondition) => Ok(false),
            Err(Refused::Aborted) => Err(backend("image delete aborted")),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    async fn expired_images(&self, now: Timestamp, limit: usize) -> Result<Vec<Image>> {
        let query = json!({
            "from": [{"collectionId": "images"}],
            "where": compare("expires_at", "LESS_THAN_OR_EQUAL", ts(now)),
            "orderBy": [order("expires_at", "ASCENDING")],
            "limit": limit,
        });
        self.query(query).await?.iter().map(image_from).collect()
    }

    async fn pending_uploads(&self, before: Timestamp, limit: usize) -> Result<Vec<Image>> {
        let query = json!({
            "from": [{"collectionId": "images"}],
            "where": all_of(vec![
                equal("status", string(ImageStatus::PendingUpload.as_str())),
                compare("uploaded_at", "LESS_THAN", ts(before)),
            ]),
            "orderBy": [order("uploaded_at", "ASCENDING")],
            "limit": limit,
        });
        self.query(query).await?.iter().map(image_from).collect()
    }

    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64> {
        let names = self
            .names_where(
                "idempotency",
                compare("created_at", "LESS_THAN", ts(before)),
            )
            .await?;
        let count = names.len() as u64;
        self.commit_all(names.iter().map(|n| self.delete_write(n)).collect())
            .await?;
        Ok(count)
    }

    async fn record_event(&self, event: &Event) -> Result<()> {
        self.commit_all(vec![self.outbox_write(event)?]).await
    }

    async fn unpublished_events(&self, limit: usize) -> Result<Vec<Event>> {
        let query = json!({
            "from": [{"collectionId": "outbox"}],
            "orderBy": [order("occurred_at", "ASCENDING"), order("__name__", "ASCENDING")],
            "limit": limit,
        });
        self.query(query)
            .await?
            .iter()
            .map(|doc| {
                let payload = need(get_str(doc, "payload"), "payload")?;
                serde_json::from_str(&payload).map_err(backend)
            })
            .collect()
    }

    async fn mark_published(&self, ids: &[Uuid], _at: Timestamp) -> Result<()> {
        let writes = ids
            .iter()
            .map(|id| self.delete_write(&self.name("outbox", &id.to_string())))
            .collect();
        self.commit_all(writes).await
    }

    async fn purge_events(&self, before: Timestamp) -> Result<u64> {
        let names = self
            .names_where("outbox", compare("occurred_at", "LESS_THAN", ts(before)))
            .await?;
        let count = names.len() as u64;
        self.commit_all(names.iter().map(|n| self.delete_write(n)).collect())
            .await?;
        Ok(count)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        for _ in 0..TRANSACTION_ATTEMPTS {
            let transaction = self.begin().await?;
            let found = self
                .batch_get(&[self.name("leases", name)], &transaction)
                .await?;
            let taken = found.first().is_some_and(|doc| {
                get_str(doc, "holder").as_deref() != Some(holder)
                    && get_ts(doc, "until").is_some_and(|t| t > now)
            });
            if taken {
                self.rollback(&transaction).await;
                return Ok(false);
            }
            let fields = json!({"holder": string(holder), "until": ts(until)});
            match self
                .commit(
                    vec![self.upsert("leases", name, fields)],
                    Some(&transaction),
                )
                .await
            {
                Ok(()) => return Ok(true),
                Err(Refused::Aborted) => continue,
                Err(Refused::Precondition) => return Ok(false),
                Err(Refused::Other(e)) => return Err(e),
            }
        }
        Ok(false)
    }

    async fn ping(&self) -> Result<()> {
        self.get("customers", "readiness-probe").await.map(drop)
    }
}
