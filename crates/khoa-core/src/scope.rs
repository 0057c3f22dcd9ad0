//! Scope sets (RFC 6749 §3.3): space-delimited, case-sensitive, order-free.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The scope that asks for a refresh token under [`crate::model::RefreshIssuance::OfflineAccess`].
pub const OFFLINE_ACCESS: &str = "offline_access";

/// OpenID Connect Core §3.1.2.1: the scope that makes an authorization an OpenID one (an ID
/// token with the code's tokens, access to `/connect/userinfo`).
pub const OPENID: &str = "openid";

/// A set of scope tokens. Kept sorted so that the wire form is stable (seed 004 answers
/// `client-data config-data hub-data offline_access user-data`, alphabetical).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<String>);

/// A scope string that breaks the RFC 6749 §3.3 grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope")]
pub struct MalformedScope;

impl ScopeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited list. Runs of spaces are tolerated (clients that join with
    /// two spaces are common); characters outside `%x21 / %x23-5B / %x5D-7E` are not.
    pub fn parse(s: &str) -> Result<Self, MalformedScope> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(MalformedScope);
            }
            set.insert(token.to_owned());
        }
        Ok(ScopeSet(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
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

impl FromStr for ScopeSet {
    type Err = MalformedScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopeSet::parse(s)
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        ScopeSet(iter.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_and_deduplicated() {
        let s = ScopeSet::parse("user-data offline_access  client-data user-data").unwrap();
        assert_eq!(s.to_string(), "client-data offline_access user-data");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn rejects_characters_outside_the_grammar() {
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("tab\there").is_err());
        assert!(ScopeSet::parse("viết").is_err());
    }

    #[test]
    fn subset_is_set_inclusion() {
        let all = ScopeSet::parse("a b c").unwrap();
        assert!(ScopeSet::parse("c a").unwrap().is_subset(&all));
        assert!(!ScopeSet::parse("a d").unwrap().is_subset(&all));
        assert!(ScopeSet::new().is_subset(&all));
    }
}
