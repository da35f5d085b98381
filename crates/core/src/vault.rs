//! Tokens: in the OS keychain when one is reachable, else in memory for this session only.
//! Never in the database, the config or the logs.
//!
//! Keychain calls block (D-Bus round trips, sometimes a prompt), so each runs on the blocking
//! pool. A keychain that fails at any step (locked, no Secret Service, no D-Bus) turns into a
//! clear notice and a session-only token: the user can still connect.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::view::{AccountId, KeychainInfo, TokenPlace};

/// Whether to use the OS keychain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeychainMode {
    /// The platform's keychain (Secret Service on Linux, Keychain on Apple, Credential Manager
    /// on Windows).
    Os,
    /// No keychain, for this reason (tests; platforms without one).
    Off(String),
}

#[derive(Debug)]
pub(crate) struct Vault {
    service: String,
    /// `Err(why)` when the keychain cannot be used.
    keychain: Mutex<Result<(), String>>,
    session: Mutex<HashMap<AccountId, String>>,
}

fn user(account: AccountId) -> String {
    format!("account-{account}")
}

impl Vault {
    /// Opens the vault; with [`KeychainMode::Os`], asks the keychain once whether it answers.
    pub(crate) async fn open(service: &str, mode: KeychainMode) -> Self {
        let keychain = match mode {
            KeychainMode::Off(why) => Err(why),
            KeychainMode::Os => {
                let service = service.to_owned();
                tokio::task::spawn_blocking(move || os::probe(&service))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
        };
        if let Err(why) = &keychain {
            tracing::warn!(%why, "no OS keychain: tokens are kept for this session only");
        }
        Self {
            service: service.to_owned(),
            keychain: Mutex::new(keychain),
            session: Mutex::default(),
        }
    }

    pub(crate) fn info(&self) -> KeychainInfo {
        match &*self.keychain.lock().unwrap_or_else(|e| e.into_inner()) {
            Ok(()) => KeychainInfo {
                available: true,
                detail: None,
            },
            Err(why) => KeychainInfo {
                available: false,
                detail: Some(why.clone()),
            },
        }
    }

    fn usable(&self) -> bool {
        self.keychain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_ok()
    }

    fn mark_unusable(&self, why: String) {
        *self.keychain.lock().unwrap_or_else(|e| e.into_inner()) = Err(why);
    }

    /// Keeps `token` for `account`: in the keychain if it takes it, else for this session.
    /// Returns where it went and, when the keychain refused, why.
    pub(crate) async fn put(
        &self,
        account: AccountId,
        token: &str,
    ) -> (TokenPlace, Option<String>) {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account, token.to_owned());
        if !self.usable() {
            return (TokenPlace::Session, None);
        }
        let (service, user, token) = (self.service.clone(), user(account), token.to_owned());
        let stored = tokio::task::spawn_blocking(move || os::set(&service, &user, &token))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match stored {
            Ok(()) => (TokenPlace::Keychain, None),
            Err(why) => {
                tracing::warn!(%why, "the keychain refused a token: kept for this session only");
                self.mark_unusable(why.clone());
                (TokenPlace::Session, Some(why))
            }
        }
    }

    /// Whether a token for `account` is held in memory.
    pub(crate) fn has_session_token(&self, account: AccountId) -> bool {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&account)
    }

    /// The token for `account`: this session's copy, else the keychain's (when `in_keychain`).
    pub(crate) async fn get(
        &self,
        account: AccountId,
        in_keychain: bool,
    ) -> Result<Option<String>, String> {
        if let Some(token) = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&account)
        {
            return Ok(Some(token.clone()));
        }
        if !in_keychain {
            return Ok(None);
        }
        let (service, user) = (self.service.clone(), user(account));
        let token = tokio::task::spawn_blocking(move || os::get(&service, &user))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))?;
        if let Some(token) = &token {
            self.session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(account, token.clone());
        }
        Ok(token)
    }

    /// Forgets `account`'s token everywhere.
    pub(crate) async fn forget(&self, account: AccountId, in_keychain: bool) {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&account);
        if in_keychain {
            let (service, user) = (self.service.clone(), user(account));
            let removed = tokio::task::spawn_blocking(move || os::delete(&service, &user))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(why) = removed {
                tracing::warn!(%why, "could not remove a token from the keychain");
            }
        }
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "ios",
    target_os = "windows"
))]
mod os {
    use keyring::{Entry, Error};

    fn describe(e: &Error) -> String {
        match e {
            Error::NoStorageAccess(inner) => {
                format!("the keychain is locked or refused access ({inner})")
            }
            Error::PlatformFailure(inner) => format!("the keychain is not reachable ({inner})"),
            other => other.to_string(),
        }
    }

    pub(super) fn probe(service: &str) -> Result<(), String> {
        let entry = Entry::new(service, "probe").map_err(|e| describe(&e))?;
        match entry.get_password() {
            Ok(_) | Err(Error::NoEntry) => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }

    pub(super) fn set(service: &str, user: &str, token: &str) -> Result<(), String> {
        let entry = Entry::new(service, user).map_err(|e| describe(&e))?;
        entry.set_password(token).map_err(|e| describe(&e))?;
        // Read it back: a store that silently keeps nothing must not be trusted with it.
        match entry.get_password() {
            Ok(back) if back == token => Ok(()),
            Ok(_) => Err("the keychain returned a different token".to_owned()),
            Err(e) => Err(describe(&e)),
        }
    }

    pub(super) fn get(service: &str, user: &str) -> Result<Option<String>, String> {
        let entry = Entry::new(service, user).map_err(|e| describe(&e))?;
        match entry.get_password() {
            Ok(token) => Ok(Some(token)),
            Err(Error::NoEntry) => Ok(None),
            Err(e) => Err(describe(&e)),
        }
    }

    pub(super) fn delete(service: &str, user: &str) -> Result<(), String> {
        let entry = Entry::new(service, user).map_err(|e| describe(&e))?;
        match entry.delete_credential() {
            Ok(()) | Err(Error::NoEntry) => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// Platforms without a keychain store in this build (Android with keyring 3).
#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "ios",
    target_os = "windows"
)))]
mod os {
    const NONE: &str = "this platform has no keychain support in this build";
    pub(super) fn probe(_: &str) -> Result<(), String> {
        Err(NONE.to_owned())
    }
    pub(super) fn set(_: &str, _: &str, _: &str) -> Result<(), String> {
        Err(NONE.to_owned())
    }
    pub(super) fn get(_: &str, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    pub(super) fn delete(_: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}
