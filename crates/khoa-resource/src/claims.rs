//! What a handler learns about a validated access token: [`Claims`] and its [`Scopes`].

use std::collections::BTreeSet;
use std::fmt;

/// A set of OAuth 2.0 scopes (RFC 6749 §3.3: space-delimited, case-sensitive, unordered).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a `scope` claim or parameter; repeated and surrounding spaces are ignored.
    pub fn parse(scope: &str) -> Scopes {
        Scopes(
            scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether every scope of `required` is in this set.
    pub fn contains_all(&self, required: &Scopes) -> bool {
        required.0.is_subset(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Scopes(
            iter.into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.is_empty())
                .collect(),
        )
    }
}

/// Space-delimited, sorted: the form of a `scope` claim.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({:?})", self.to_string())
    }
}

/// How a token was validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// An RFC 9068 JWT, verified offline against the issuer's JWKS.
    Jwt,
    /// An opaque token the issuer vouched for through RFC 7662 introspection.
    Introspection,
}

/// The validated claims of an access token, inserted into the request's extensions by
/// [`crate::KhoaAuthLayer`] and read by the [`crate::KhoaClaims`] extractor.
///
/// Never holds the token itself, so that logging a `Claims` cannot leak a credential.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Claims {
    /// The subject: a user id, or for client-only grants the client (RFC 9068 §2.2). When an
    /// introspection response omits `sub`, this is the `client_id`.
    pub sub: String,
    pub client_id: String,
    pub scope: Scopes,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    /// The refresh-token family (session) the token came from, when khoa says.
    pub sid: Option<String>,
    pub source: TokenSource,
    /// Every claim as received (the JWT payload or the introspection response), for the ones
    /// this struct does not name (e.g. khoa's `otp_sha256`).
    pub raw: serde_json::Value,
}

impl Claims {
    /// Whether the token was granted every scope of `required`.
    pub fn has_scopes(&self, required: &Scopes) -> bool {
        self.scope.contains_all(required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_ignoring_extra_spaces_and_print_sorted() {
        let s = Scopes::parse("  write read  read ");
        assert_eq!(s.len(), 2);
        assert_eq!(s.to_string(), "read write");
        assert!(s.contains("read"));
        assert!(!s.contains("READ"), "scopes are case-sensitive");
    }

    #[test]
    fn containment_is_a_subset_test() {
        let granted = Scopes::parse("a b c");
        assert!(granted.contains_all(&Scopes::parse("a c")));
        assert!(granted.contains_all(&Scopes::default()));
        assert!(!granted.contains_all(&Scopes::parse("a d")));
        assert_eq!(["x", "", "y"].into_iter().collect::<Scopes>().len(), 2);
    }
}
