//! Rendering answers: the success body from the issued tokens, and every refusal from the
//! dialect's error template and the case its kind falls to.

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use crate::def::StatusMode;
use crate::load::{Dialect, Endpoint, Errors};
use crate::refusal::{Kind, Refused};

/// A rendered answer: status, extra headers, JSON body. The edge adds `Content-Type`,
/// `Cache-Control: no-store` and `Retry-After`.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Value,
}

/// The values a success template names (see [`crate::load::ANSWER_FIELDS`]).
#[derive(Clone, Debug, Default)]
pub struct Issued<'a> {
    pub access_token: &'a str,
    pub token_type: &'a str,
    pub expires_in: i64,
    pub refresh_token: Option<&'a str>,
    pub refresh_expires_in: Option<i64>,
    pub otp_token: Option<&'a str>,
    pub scope: Option<String>,
    pub client_id: &'a str,
    /// OpenID Connect Core §3.1.3.3, when the code was granted `openid`.
    pub id_token: Option<&'a str>,
    /// Unix seconds.
    pub issued_at: i64,
}

impl Issued<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        Some(match name {
            "access_token" => self.access_token.into(),
            "token_type" => self.token_type.into(),
            "expires_in" => self.expires_in.into(),
            "refresh_token" => self.refresh_token?.into(),
            "refresh_expires_in" => self.refresh_expires_in?.into(),
            "otp_token" => self.otp_token?.into(),
            "id_token" => self.id_token?.into(),
            // Space-separated, possibly empty: RFC 6749 §5.1 answers the granted scope.
            "scope" => self.scope.clone()?.into(),
            "client_id" => self.client_id.into(),
            "issued_at" => self.issued_at.into(),
            "expires_at" => (self.issued_at + self.expires_in).into(),
            "refresh_expires_at" => (self.issued_at + self.refresh_expires_in?).into(),
            _ => return None,
        })
    }
}

impl Endpoint {
    pub fn render(&self, issued: &Issued<'_>) -> Answer {
        Answer {
            status: StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK),
            headers: self.headers.clone(),
            body: self.response.render(&|n| issued.get(n)),
        }
    }
}

impl Dialect {
    /// The error answers of endpoint number `index`: its own, or the dialect's.
    pub fn errors_of(&self, index: usize) -> &Errors {
        self.endpoints
            .get(index)
            .and_then(|e| e.errors.as_ref())
            .unwrap_or(&self.errors)
    }

    /// The answer to a refusal at endpoint number `index`.
    pub fn refuse_at(&self, index: usize, r: &Refused) -> Answer {
        self.errors_of(index).refuse(r)
    }

    /// The answer to a refusal, as the dialect's `[errors]` give it.
    pub fn refuse(&self, r: &Refused) -> Answer {
        self.errors.refuse(r)
    }
}

impl Errors {
    /// The case a refusal of `kind` is answered with, and the kind that owns it.
    pub fn case_for(&self, kind: Kind) -> (Kind, &crate::load::Case) {
        let mut at = kind;
        loop {
            if let Some(c) = self.cases.get(&at) {
                return (at, c);
            }
            // The loader refuses a definition without both roots, so the walk ends.
            at = at.parent().unwrap_or(Kind::ServerError);
        }
    }

    /// The answer to a refusal.
    pub fn refuse(&self, r: &Refused) -> Answer {
        let (owner, case) = self.case_for(r.kind);
        let status = match case.status {
            Some(s) if owner == r.kind => s,
            _ => r.kind.status(),
        };
        let base = |name: &str| -> Option<Value> {
            Some(match name {
                "status" => status.into(),
                "error" => r.error.unwrap_or_else(|| r.kind.oauth_code()).into(),
                "description" => r.description.clone().into(),
                "field" => r.field.clone()?.into(),
                "header" => r.header.clone()?.into(),
                "retry_after" => r.retry_after?.into(),
                _ => return None,
            })
        };
        let message = match &case.message {
            Some(t) => t.render(&base),
            None => Value::String(r.description.clone()),
        };
        let values: Vec<(&str, Value)> = case
            .values
            .iter()
            .map(|(k, t)| (k.as_str(), t.render(&base)))
            .collect();
        let lookup = |name: &str| -> Option<Value> {
            if let Some((_, v)) = values.iter().find(|(k, _)| *k == name) {
                return Some(v.clone());
            }
            match name {
                "message" => Some(message.clone()),
                n => base(n),
            }
        };
        let body = self.body.render(&lookup);
        let status = match (self.mode, &self.mirror) {
            (StatusMode::Mirror, Some(path)) => path
                .split('.')
                .try_fold(&body, |v, seg| v.get(seg))
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(status),
            _ => status,
        };
        Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: case.headers.clone(),
            body,
        }
    }
}
