//! The token lifecycle, in both vocabularies: the seed's `update_token` / `connect` /
//! `disconnect` / `reset` (the flow of Triplit's Clerk guide: on a new token, disconnect,
//! update the token, reset if there is none, else connect), and Triplit 1.x's sessions
//! (`start_session` with a refresh handler called before the token expires, `end_session`,
//! `update_session_token`, which keeps the socket open).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value as Json, json};

use super::engine::SyncEngine;
use super::{Client, ClientEvent, RefreshHandler, Shared, no_session, now_ms};
use crate::auth::unverified_claims;
use crate::error::{Error, Result};
use crate::sync::protocol::WireError;

/// A refresh is asked for this long before the token expires, and never sooner than this
/// after it was scheduled (as `@triplit/client`).
const REFRESH_LEAD_MS: i64 = 1000;
/// When the refresh handler has no token, it is asked again after this.
const REFRESH_RETRY_MS: i64 = 5000;

impl Client {
    /// Replaces the token (or removes it). The open connection keeps the token it opened
    /// with: `disconnect` first, then `connect` (the Clerk guide's flow).
    ///
    /// A token for another user (another `sub`, or other roles) first wipes what the previous
    /// one synced, so the new user never sees it; the previous user's pending transactions
    /// cannot be sent as the new one, so each is reported rejected (`SessionChangedError`).
    pub fn update_token(&self, token: Option<&str>) -> Result<()> {
        let claims = token.map(decode).transpose()?;
        self.shared.with_engine(|engine| {
            if let Some(claims) = &claims {
                self.shared.forget_other_identity(engine, claims)?;
            }
            engine.set_token(token.map(str::to_owned));
            Ok::<_, Error>(())
        })?;
        self.shared.set_local_session(claims.as_ref())
    }

    /// Connects (and keeps reconnecting, with backoff) until `disconnect`.
    pub fn connect(&self) -> Result<()> {
        self.shared.with_engine(|engine| {
            if engine.token().is_none() || engine.server_url().is_none() {
                return Err(no_session("connecting needs a token and a server URL"));
            }
            engine.connect();
            Ok(())
        })?;
        self.shared.wake();
        Ok(())
    }

    /// Closes the connection (code 1000, `MANUAL_DISCONNECT`); local reads and writes go on.
    pub fn disconnect(&self) {
        self.shared.with_engine(|engine| engine.disconnect());
        self.shared.wake();
    }

    /// Wipes the local data, the outbox (pending writes are dropped) and every sync
    /// checkpoint, keeping the schema: sign-out. A connection open meanwhile starts over.
    pub fn reset(&self) -> Result<()> {
        let shared = &self.shared;
        shared.with_engine(|engine| {
            let reconnect = engine.intends_to_connect() && engine.status() != super::ConnectionStatus::Closed;
            if reconnect {
                engine.disconnect();
            }
            shared.wipe(engine)?;
            if reconnect {
                engine.connect();
            }
            Ok::<_, Error>(())
        })?;
        shared.wake();
        Ok(())
    }

    /// Starts a session with `token` (Triplit 1.x): the previous session's connection ends,
    /// `refresh` (if any) is asked for a new token a second before this one expires, and the
    /// client connects if `connect`. An already expired token is refreshed first.
    pub fn start_session(&self, token: &str, connect: bool, refresh: Option<RefreshHandler>) -> Result<()> {
        let mut refresh = refresh;
        let mut token = token.to_owned();
        let mut claims = decode(&token)?;
        if is_expired(&claims)
            && let Some(fresh) = refresh.as_mut().and_then(|handler| handler())
        {
            claims = decode(&fresh)?;
            token = fresh;
        }
        let shared = &self.shared;
        *shared.refresh.lock() = refresh;
        shared.with_engine(|engine| {
            if engine.token() != Some(token.as_str()) {
                engine.disconnect();
                shared.forget_other_identity(engine, &claims)?;
                engine.set_token(Some(token));
            }
            engine.set_refresh_at(shared.refresh_time(&claims));
            if connect && engine.server_url().is_some() {
                engine.connect();
            }
            Ok::<_, Error>(())
        })?;
        shared.set_local_session(Some(&claims))?;
        shared.wake();
        Ok(())
    }

    /// Ends the session: disconnects and forgets the token and its refresh handler. Local data
    /// stays (call [`Client::reset`] as well on sign-out).
    pub fn end_session(&self) -> Result<()> {
        *self.shared.refresh.lock() = None;
        self.shared.set_local_session(None)?;
        self.shared.with_engine(|engine| {
            engine.disconnect();
            engine.set_token(None);
            engine.set_refresh_at(None);
        });
        self.shared.wake();
        Ok(())
    }

    /// Gives the session a new token without closing the socket (`POST /update-token` with the
    /// connection's `clientId`). The new token must carry the same roles.
    pub fn update_session_token(&self, token: &str) -> Result<()> {
        self.shared.update_session_token(token)
    }
}

impl Shared {
    pub(super) fn update_session_token(&self, token: &str) -> Result<()> {
        let (current, client_id) =
            self.with_engine(|engine| (engine.token().map(str::to_owned), engine.client_id().map(str::to_owned)));
        let current = current.ok_or_else(|| no_session("there is no session to update"))?;
        let claims = decode(token)?;
        if is_expired(&claims) {
            return Err(Error::ClientSession {
                name: "TokenExpiredError",
                message: "the new token has expired".into(),
            });
        }
        if self.roles_of(&decode(&current)?)? != self.roles_of(&claims)? {
            return Err(Error::ClientSession {
                name: "SessionRolesMismatchError",
                message: "the new token's roles differ from the session's".into(),
            });
        }
        if let Some(client_id) = client_id {
            let body = json!({"clientId": client_id});
            // One retry after a second, as `@triplit/client`.
            if let Err(first) = self.post_http("/update-token", Some(token), &body) {
                tracing::debug!(error = %first, "updating the token failed; retrying once");
                std::thread::sleep(Duration::from_secs(1));
                self.post_http("/update-token", Some(token), &body)?;
            }
        }
        self.set_local_session(Some(&claims))?;
        let resume = self.paused_for_refresh.swap(false, Ordering::AcqRel);
        self.with_engine(|engine| {
            engine.set_token(Some(token.to_owned()));
            engine.set_refresh_at(self.refresh_time(&claims));
            if resume {
                engine.connect();
            }
        });
        self.wake();
        Ok(())
    }

    /// On the delivery thread: asks the refresh handler for a token and takes it.
    pub(super) fn refresh_token(&self) {
        let Some(mut handler) = self.refresh.lock().take() else { return };
        let fresh = handler();
        {
            let mut slot = self.refresh.lock();
            if slot.is_none() {
                *slot = Some(handler);
            }
        }
        match fresh {
            Some(token) => {
                if let Err(error) = self.update_session_token(&token) {
                    tracing::warn!(%error, "the refreshed token was not taken");
                }
            }
            None => {
                // No token now: stop using the expiring one, ask again shortly.
                self.paused_for_refresh.store(true, Ordering::Release);
                self.with_engine(|engine| {
                    engine.disconnect();
                    engine.set_refresh_at(Some(now_ms() + REFRESH_RETRY_MS));
                });
                self.wake();
            }
        }
    }

    /// Wipes the local data, the outbox and every checkpoint, in one transaction.
    fn wipe(&self, engine: &mut SyncEngine) -> Result<()> {
        self.db.transact(|tx| {
            tx.delete_every_entity()?;
            for (key, _) in tx.scan_meta(super::META_PREFIX)? {
                tx.delete_meta(&key)?;
            }
            Ok(())
        })?;
        engine.forget_sync_state();
        Ok(())
    }

    /// Before a token for another user is taken: the previous user's data goes, and each of
    /// their pending transactions is reported rejected. The same user (a refreshed token)
    /// keeps everything.
    fn forget_other_identity(&self, engine: &mut SyncEngine, claims: &Map<String, Json>) -> Result<()> {
        let Some(previous) = engine.token().map(decode).transpose()? else { return Ok(()) };
        if previous.get("sub") == claims.get("sub") && self.roles_of(&previous)? == self.roles_of(claims)? {
            return Ok(());
        }
        engine.disconnect();
        let dropped: Vec<String> = engine.outbox.iter().map(|p| p.tx_id.clone()).collect();
        self.wipe(engine)?;
        for tx_id in dropped {
            let error = WireError::new(
                "SessionChangedError",
                "the session changed to another user before the server acknowledged this transaction",
                401,
            );
            engine.report(ClientEvent::WriteRejected { tx_id, error });
        }
        Ok(())
    }

    /// The roles the schema gives these claims.
    fn roles_of(&self, claims: &Map<String, Json>) -> Result<Vec<crate::permissions::SessionRole>> {
        Ok(self.db.session_from_claims(Json::Object(claims.clone()))?.roles().to_vec())
    }

    /// When to ask for a new token: a second before `exp`, at least a second from now; never
    /// without a refresh handler or an `exp`.
    fn refresh_time(&self, claims: &Map<String, Json>) -> Option<i64> {
        self.refresh.lock().as_ref()?;
        let exp = claims.get("exp").and_then(Json::as_i64)?;
        let now = now_ms();
        Some(now + (exp * 1000 - now - REFRESH_LEAD_MS).max(REFRESH_LEAD_MS))
    }

    /// The session the local permission checks run as (none without a token).
    fn set_local_session(&self, claims: Option<&Map<String, Json>>) -> Result<()> {
        let session = match claims {
            Some(claims) if self.db.schema().is_some() => {
                Some(self.db.session_from_claims(Json::Object(claims.clone()))?)
            }
            _ => None,
        };
        *self.local_session.lock() = session;
        Ok(())
    }
}

fn decode(token: &str) -> Result<Map<String, Json>> {
    unverified_claims(token).map_err(|e| Error::ClientSession {
        name: "TokenDecodingError",
        message: format!("the token cannot be read: {e}"),
    })
}

fn is_expired(claims: &Map<String, Json>) -> bool {
    claims.get("exp").and_then(Json::as_i64).is_some_and(|exp| exp * 1000 <= now_ms())
}
