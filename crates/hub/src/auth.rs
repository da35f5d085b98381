//! Bearer-token authentication with JWTs (HS256 or RS256).
//!
//! With auth configured, negotiate and every transport request must carry a valid token, in
//! the `Authorization: Bearer` header or the `access_token` query parameter (browsers cannot
//! set headers on WebSockets and EventSource). The user is the token's subject. A bad token is
//! answered with 401 and no connection is created; a token for another user than the one that
//! negotiated gets 403.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT key: {0}")]
pub struct KeyError(String);

#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: Option<String>,
}

impl JwtAuth {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 16 {
            return Err(KeyError(
                "an HS256 secret needs at least 16 bytes".to_owned(),
            ));
        }
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation: Validation::new(Algorithm::HS256),
        })
    }

    /// RS256 with an RSA public key in PEM form.
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self {
            key,
            validation: Validation::new(Algorithm::RS256),
        })
    }

    /// Also require this issuer (`iss`).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Also require this audience (`aud`).
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self
    }

    /// The user a request's token names, or why it has none.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<String, String> {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let token = from_header
            .or_else(|| query.get("access_token").map(String::as_str))
            .ok_or_else(|| "no bearer token".to_owned())?;
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        data.claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "the token has no subject".to_owned())
    }
}
