//! What a caller proves itself with. Every secret is a [`SecretString`]: its `Debug` is
//! redacted, so a `{:?}` of a source or its credentials never prints one.

use std::path::Path;

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

/// A secret kept out of command lines and configuration files: the contents of `file` (`-`:
/// standard input) or of the environment variable `env`, less one trailing newline (what an
/// editor or `echo` leaves). Neither given: `None`. Both, an unreadable file, an unset
/// variable or an empty secret: an error naming `what` and where it looked.
pub fn read_secret(
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<SecretString>, String> {
    let text = match (file, env) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(format!(
                "{what}: give a file or an environment variable, not both"
            ));
        }
        (Some(path), None) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("{what}: standard input: {e}"))?;
            text
        }
        (Some(path), None) => {
            std::fs::read_to_string(path).map_err(|e| format!("{what}: {}: {e}", path.display()))?
        }
        (None, Some(name)) => std::env::var(name)
            .map_err(|_| format!("{what}: the environment variable {name} is not set"))?,
    };
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Some(SecretString::from(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_secret_file_loses_one_trailing_newline_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, " s3cret \r\n").unwrap();
        let got = read_secret("client_secret", Some(&file), None)
            .unwrap()
            .unwrap();
        assert_eq!(got.expose_secret(), " s3cret ");

        std::fs::write(&file, "\n").unwrap();
        let empty = read_secret("client_secret", Some(&file), None).unwrap_err();
        assert_eq!(empty, "client_secret is empty");
        let both = read_secret("client_secret", Some(&file), Some("X")).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let missing = read_secret("password", Some(&dir.path().join("nope")), None).unwrap_err();
        assert!(
            missing.starts_with("password: ") && missing.contains("nope"),
            "{missing}"
        );
        let unset = read_secret("password", None, Some("KHOA_TEST_SURELY_UNSET")).unwrap_err();
        assert!(unset.contains("KHOA_TEST_SURELY_UNSET"), "{unset}");
        assert!(read_secret("x", None, None).unwrap().is_none());
    }
}
