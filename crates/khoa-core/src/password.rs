//! Password hashing with Argon2id, off the async runtime and with bounded concurrency.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

use crate::error::EngineError;

/// Argon2id cost. The default is OWASP's recommendation (m=19456 KiB, t=2, p=1); tests lower
/// it only through explicit configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords on the blocking pool, at most `max_concurrent` at a time, so
/// a burst of logins cannot starve the runtime or exhaust memory (each hash holds
/// `memory_kib`).
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Callers allowed to wait for a permit; beyond, the call is refused at once (load
    /// shedding) instead of queueing without bound.
    max_waiting: usize,
    waiting: Arc<AtomicUsize>,
    /// A real hash of a random password, verified when the username is unknown so that an
    /// unknown user costs what a wrong password costs (no user enumeration by timing).
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once and `max_waiting` more callers wait; any
    /// further caller gets [`EngineError::Unavailable`] immediately.
    pub fn new(
        params: PasswordParams,
        max_concurrent: usize,
        max_waiting: usize,
    ) -> Result<Self, EngineError> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| EngineError::Internal(format!("invalid Argon2 parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon
            .hash_password(b"khoa dummy password, never valid", &salt)
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .to_string();
        Ok(PasswordHasher {
            argon,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_waiting,
            waiting: Arc::new(AtomicUsize::new(0)),
            dummy_hash: dummy.into(),
        })
    }

    /// Argon2id PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: &SecretString) -> Result<String, EngineError> {
        let argon = self.argon.clone();
        let password = password.clone();
        self.run(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| EngineError::Internal(e.to_string()))
        })
        .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when `stored` is `None`
    /// (then the answer is always `false`, after the same work).
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> Result<bool, EngineError> {
        let argon = self.argon.clone();
        let password = password.clone();
        let known = stored.is_some();
        let hash: String = stored.unwrap_or(&self.dummy_hash).to_owned();
        self.run(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| EngineError::Internal(format!("unreadable password hash: {e}")))?;
            let ok = argon
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            Ok(ok && known)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let _permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(EngineError::Unavailable(
                        "password verification is saturated".into(),
                    ));
                }
                let permit = self.permits.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                permit.map_err(|_| EngineError::Unavailable("password pool closed".into()))?
            }
        };
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| EngineError::Internal(format!("password task failed: {e}")))?
    }

    /// The PHC string verified for unknown users; exposed so tests can prove it is a real
    /// Argon2id hash with the configured cost.
    pub fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(
            PasswordParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            2,
            4,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let h = cheap();
        let pw = SecretString::from("@Password123");
        let stored = h.hash(&pw).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("Password123"));
        assert!(h.verify(&pw, Some(&stored)).await.unwrap());
        let wrong = SecretString::from("@Password124");
        assert!(!h.verify(&wrong, Some(&stored)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_user_runs_a_real_verification_and_fails() {
        let h = cheap();
        assert!(h.dummy_hash().starts_with("$argon2id$"));
        // Even the password the dummy was made from does not pass when the user is unknown.
        let pw = SecretString::from("khoa dummy password, never valid");
        assert!(!h.verify(&pw, None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_callers_are_refused_at_once() {
        // One hash at a time, one waiter: of many simultaneous calls some must be shed.
        let h = PasswordHasher::new(PasswordParams::default(), 1, 1).unwrap();
        let pw = SecretString::from("x");
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (h, pw) = (h.clone(), pw.clone());
                tokio::spawn(async move { h.verify(&pw, None).await })
            })
            .collect();
        let mut shed = 0;
        let mut done = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(false) => done += 1,
                Err(EngineError::Unavailable(_)) => shed += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(shed >= 1, "nothing was shed");
        assert!(done >= 2, "the running and the waiting call complete");
        assert_eq!(h.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn default_cost_is_owasp() {
        let p = PasswordParams::default();
        assert_eq!((p.memory_kib, p.iterations, p.parallelism), (19_456, 2, 1));
    }
}
