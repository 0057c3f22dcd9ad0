//! What a caller proves itself with. Every secret is a [`SecretString`]: its `Debug` is
//! redacted, so a `{:?}` of a source or its credentials never prints one.

use secrecy::SecretString;

/// The credentials a dialect's request may need. Which of them are sent, and where, is the
/// definition's business (its `inputs`, `client_auth`, `envelope` and `signature`); a field
/// the chosen endpoint does not read is not sent.
///
/// # Examples
///
/// ```
/// use khoa_client::Credentials;
///
/// let creds = Credentials::client("my-app", "s3cret-s3cret-s3cret").with_scope("read");
/// assert!(!format!("{creds:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// A resource owner's, for the password grant.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Space-separated, as RFC 6749 §3.3 writes it.
    pub scope: Option<String>,
    /// Envelope dialects: the partner code sent in the key header.
    pub partner_code: Option<String>,
    /// Envelope dialects: the partner's AES-256 key in hex (`khoa partner add` prints it).
    pub partner_key_hex: Option<SecretString>,
    /// Signature dialects: the RSA private key in PEM (PKCS#8 or PKCS#1) for `rsa_sha256`,
    /// or the shared secret for `hmac_sha256` / `hmac_sha512`.
    pub signing_key: Option<SecretString>,
}

impl Credentials {
    /// A client's id and secret: client credentials.
    pub fn client(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            client_id: Some(id.into()),
            client_secret: Some(SecretString::from(secret.into())),
            ..Credentials::default()
        }
    }

    /// A resource owner's username and password (with a client, when the dialect names one).
    pub fn with_user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(SecretString::from(password.into()));
        self
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn with_partner(mut self, code: impl Into<String>, key_hex: impl Into<String>) -> Self {
        self.partner_code = Some(code.into());
        self.partner_key_hex = Some(SecretString::from(key_hex.into()));
        self
    }

    pub fn with_signing_key(mut self, key: impl Into<String>) -> Self {
        self.signing_key = Some(SecretString::from(key.into()));
        self
    }

    /// Whether these credentials can log in again without a refresh token.
    pub(crate) fn can_log_in(&self) -> bool {
        self.client_secret.is_some()
            || self.password.is_some()
            || self.signing_key.is_some()
            || self.partner_key_hex.is_some()
    }
}
