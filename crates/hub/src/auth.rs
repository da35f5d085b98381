//! Bearer-token authentication with JWTs (HS256 or RS256).
//!
//! With auth configured, negotiate and every transport request must carry a valid token, in
//! the `Authorization: Bearer` header or the `access_token` query parameter (browsers cannot
//! set headers on WebSockets and EventSource). The user is the token's subject. A bad token is
//! answered with 401 and no connection is created; a token for another user than the one that
//! negotiated gets 403.
//!
//! With a scope claim ([`JwtAuth::scope_claim`]), the token also decides the connection's
//! scope (the chat hub's `?scope=`, its tenant): the request's `scope` parameter is set to the
//! claim's value, a request that asks for another scope is refused with 403, and a token
//! without the claim (or with one that is not a string) with 401.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
    scope_claim: Option<String>,
}

/// Why a request's token does not admit it.
#[derive(Debug)]
pub(crate) enum Denied {
    /// No token, or not a valid one (401): the reason, for the log.
    Unauthorized(String),
    /// A valid token, but the request asks for a scope other than the token's (403).
    OtherScope,
}

/// The text of a 403 for a scope other than the token's.
pub(crate) const OTHER_SCOPE: &str =
    "The scope is the token's: this token does not admit the scope asked for.";

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

/// How tokens are validated: this algorithm only, `exp` required and checked, `nbf` checked
/// when present, both with [`LEEWAY_SECONDS`] of clock skew (RFC 7519 §4.1.4, §4.1.5).
fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    validation
}

/// The clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;

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
            validation: validation(Algorithm::HS256),
            scope_claim: None,
        })
    }

    /// RS256 with an RSA public key in PEM form.
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self {
            key,
            validation: validation(Algorithm::RS256),
            scope_claim: None,
        })
    }

    /// Also require this issuer: a token whose `iss` is another, or that has none, is refused.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Also require this audience: a token whose `aud` does not name it, or that has none, is
    /// refused.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Bind each connection's scope to this claim of its token (a string, such as a tenant
    /// id): the client cannot choose another scope (see the module's documentation).
    pub fn scope_claim(mut self, claim: &str) -> Self {
        self.scope_claim = Some(claim.to_owned());
        self
    }

    /// The user a request's token names, with the request's `scope` parameter set to the
    /// token's scope claim when one is configured; or why the request is not admitted.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &mut HashMap<String, String>,
    ) -> Result<String, Denied> {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let token = from_header
            .or_else(|| query.get("access_token").map(String::as_str))
            .ok_or_else(|| Denied::Unauthorized("no bearer token".to_owned()))?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token.trim(),
            &self.key,
            &self.validation,
        )
        .map_err(|e| Denied::Unauthorized(format!("invalid token: {e}")))?;
        let claims = data.claims;
        let user = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Denied::Unauthorized("the token has no subject".to_owned()))?
            .to_owned();
        if let Some(claim) = &self.scope_claim {
            let scope = claims
                .get(claim)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| {
                    Denied::Unauthorized(format!("the token has no '{claim}' claim (a string)"))
                })?;
            if query.get("scope").is_some_and(|asked| asked != scope) {
                return Err(Denied::OtherScope);
            }
            query.insert("scope".to_owned(), scope.to_owned());
        }
        Ok(user)
    }
}
