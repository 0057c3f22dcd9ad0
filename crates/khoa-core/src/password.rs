//! Password hashing with Argon2id, off the async runtime and with bounded concurrency.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    permits_total: usize,
    /// Callers allowed to wait for a permit; beyond, the call is refused at once (load
    /// shedding) instead of queueing without bound.
    max_waiting: usize,
    waiting: Arc<AtomicUsize>,
    /// Calls refused because the pool and its queue were full, since start (a metric).
    shed: Arc<std::sync::atomic::AtomicU64>,
    /// Argon2 working memory kept between verifications, one buffer per running hash: a fresh
    /// 19 MiB allocation costs page faults and zeroing worth a fifth of the hash itself. Filled
    /// by the first logins only, so an idle server holds none.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A real hash of a random password, verified when the username is unknown so that an
    /// unknown user costs what a wrong password costs (no user enumeration by timing).
    dummy_hash: Arc<str>,
    /// Verifications run against the dummy hash: lets tests prove the unknown-user and
    /// locked-account paths pay for a real Argon2id run without timing anything.
    dummy_runs: Arc<AtomicU64>,
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
        .map_err(|e| EngineError::internal_caused("invalid Argon2 parameters", e))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon
            .hash_password(b"khoa dummy password, never valid", &salt)
            .map_err(|e| EngineError::internal_caused("hashing the dummy password", e))?
            .to_string();
        Ok(PasswordHasher {
            argon,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            permits_total: max_concurrent.max(1),
            max_waiting,
            waiting: Arc::new(AtomicUsize::new(0)),
            shed: Arc::default(),
            buffers: Arc::new(Mutex::new(Vec::new())),
            dummy_hash: dummy.into(),
            dummy_runs: Arc::new(AtomicU64::new(0)),
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
                .map_err(|e| EngineError::internal_caused("hashing a password", e))
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
        self.slot().await?.verify(password, stored).await
    }

    /// A place in the pool, waited for (or refused, when the queue is full) before the work it
    /// is for is known: the sign-in takes one before it counts its attempt, so that an attempt
    /// shed for load is never counted as a failed guess.
    pub async fn slot(&self) -> Result<PasswordSlot<'_>, EngineError> {
        Ok(PasswordSlot {
            hasher: self,
            _permit: self.acquire().await?,
        })
    }

    fn verify_job(
        &self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> impl FnOnce() -> Result<bool, EngineError> + Send + 'static {
        let password = password.clone();
        let known = stored.is_some();
        let hash: String = stored.unwrap_or(&self.dummy_hash).to_owned();
        let buffers = self.buffers.clone();
        let keep = self.permits_total;
        let dummy_runs = self.dummy_runs.clone();
        move || {
            let ok = verify_phc(password.expose_secret().as_bytes(), &hash, &buffers, keep)?;
            if !known {
                dummy_runs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ok && known)
        }
    }

    /// Calls refused at once since start because every slot and queue place was taken.
    pub fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let _permit = self.acquire().await?;
        spawn_hash(f).await
    }

    /// One of the `max_concurrent` permits, waited for in the queue, or
    /// [`EngineError::Unavailable`] at once when the queue is full too.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        Ok(match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(EngineError::Unavailable(
                        "password verification is saturated".into(),
                    ));
                }
                let permit = self.permits.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                permit.map_err(|_| EngineError::Unavailable("password pool closed".into()))?
            }
        })
    }

    /// The PHC string verified for unknown users; exposed so tests can prove it is a real
    /// Argon2id hash with the configured cost.
    pub fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }

    /// How many verifications ran (to the end) against the dummy hash.
    pub fn dummy_verifications(&self) -> u64 {
        self.dummy_runs.load(Ordering::Relaxed)
    }
}

/// A place taken in the pool of a [`PasswordHasher`] ([`PasswordHasher::slot`]): one
/// verification runs in it without waiting again; dropping it unused gives the place back.
pub struct PasswordSlot<'a> {
    hasher: &'a PasswordHasher,
    _permit: OwnedSemaphorePermit,
}

impl PasswordSlot<'_> {
    /// [`PasswordHasher::verify`] in this place.
    pub async fn verify(
        self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> Result<bool, EngineError> {
        spawn_hash(self.hasher.verify_job(password, stored)).await
    }
}

/// Runs an Argon2 job on the blocking pool (the caller holds its permit).
async fn spawn_hash<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::internal_caused("password task failed", e))?
}

/// Verifies `password` against a PHC string with the parameters stored in it, reusing working
/// memory from `buffers` (at most `keep` buffers are kept).
fn verify_phc(
    password: &[u8],
    phc: &str,
    buffers: &Mutex<Vec<Vec<Block>>>,
    keep: usize,
) -> Result<bool, EngineError> {
    fn unreadable(e: impl std::fmt::Display) -> EngineError {
        EngineError::internal(format!("unreadable password hash: {e}"))
    }
    let parsed = PasswordHash::new(phc).map_err(unreadable)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(unreadable)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(unreadable)?
        .unwrap_or_default();
    let expected = parsed
        .hash
        .ok_or_else(|| EngineError::internal("password hash without output"))?;
    let stored = Params::try_from(&parsed).map_err(unreadable)?;
    let params = Params::new(
        stored.m_cost(),
        stored.t_cost(),
        stored.p_cost(),
        Some(expected.len()),
    )
    .map_err(|e| EngineError::internal_caused("password hash parameters", e))?;
    let mut salt = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or_else(|| EngineError::internal("password hash without salt"))?
        .decode_b64(&mut salt)
        .map_err(unreadable)?;
    let needed = params.block_count();
    let mut memory = {
        let mut pool = buffers.lock().expect("argon2 buffers poisoned");
        match pool.iter().position(|b| b.len() >= needed) {
            Some(i) => pool.swap_remove(i),
            None => vec![Block::new(); needed],
        }
    };
    let mut out = vec![0u8; expected.len()];
    let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        &mut memory[..],
    );
    {
        let mut pool = buffers.lock().expect("argon2 buffers poisoned");
        if pool.len() < keep {
            pool.push(memory);
        }
    }
    result.map_err(|e| EngineError::internal_caused("argon2", e))?;
    Ok(crate::secret::ct_eq(&out, expected.as_bytes()))
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
    async fn verification_reuses_working_memory_and_stays_correct() {
        let h = cheap();
        let pw = SecretString::from("right");
        let stored = h.hash(&pw).await.unwrap();
        for _ in 0..3 {
            assert!(h.verify(&pw, Some(&stored)).await.unwrap());
            let wrong = SecretString::from("wrong");
            assert!(!h.verify(&wrong, Some(&stored)).await.unwrap());
        }
        let kept = h.buffers.lock().unwrap().len();
        assert!((1..=2).contains(&kept), "{kept} buffers kept for 2 permits");
        // A hash made with other parameters (an older cost) still verifies.
        let older = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(128, 2, 1, None).unwrap(),
        )
        .hash_password(b"right", &SaltString::generate(&mut rand::rngs::OsRng))
        .unwrap()
        .to_string();
        assert!(h.verify(&pw, Some(&older)).await.unwrap());
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
